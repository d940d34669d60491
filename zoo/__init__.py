"""The model zoo: registry, Keras models, training, evaluation, export, serving, explanation.

Project code uses Keras 3 (`import keras`); only the Hugging Face encoders in the SSL steps use
tf_keras, in their own process.
"""
