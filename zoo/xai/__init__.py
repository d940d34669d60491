"""Explanations of the zoo's models and the checks that say whether to believe them.

    attribution   maps (Grad-CAM, Grad-CAM++, Score-CAM, saliency) on the feature-input model
    data          exports and clips -> features, labels and predictions
    sanity        parameter / data randomisation and deletion / insertion (Adebayo et al. 2018)
    compare       where the evidence sits per feature band, MFCC against log-Mel
    plots         the figures
"""
