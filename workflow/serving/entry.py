"""code/inference.py of an autolabel model archive (SAGEMAKER_PROGRAM=inference.py).

SageMaker's framework container puts /opt/ml/model/code (this folder) on sys.path, installs
requirements.txt (the bundled wheels, no network) and calls these four functions. The project code
they need sits beside this file, in workflow/.
"""

from workflow.serving.handler import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
