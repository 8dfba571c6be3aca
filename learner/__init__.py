"""learner: fastai-style image classification on PyTorch. The public API is assembled here at integration."""
