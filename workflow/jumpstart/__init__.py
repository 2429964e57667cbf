"""SageMaker JumpStart models: turn a model id into the stack's deploy parameters.

The ``sagemaker`` SDK behind it is an optional extra (``make jumpstart-sdk``); no Lambda imports this package.
"""
