"""Explanations of the zoo's models and the checks that say whether to believe them.

    attribution   maps (Grad-CAM(++), Score-CAM, saliency, gradient x input, integrated
                  gradients) on the feature-input model
    data          exports and clips -> features, labels and predictions
    sanity        parameter / data randomisation and deletion / insertion (Adebayo et al. 2018)
    compare       where the evidence sits per feature band, MFCC against log-Mel
    whisper       Whisper models: the encoder run piece by piece, Grad-CAM over its frames,
                  its weight groups for the cascade, permuted-label heads on the frozen encoder
    whisper_report  where in the clip (time profiles) and the Whisper part of the report
    plots         the figures
"""
