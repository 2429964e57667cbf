"""Serving: the one code path of a model behind a SageMaker (or local) asynchronous endpoint.

- :mod:`workflow.serving.protocol`: this project's request contract (an image, or a JSON list of
  ``s3://`` frame URIs) and its answers;
- :mod:`workflow.serving.handler`: the SageMaker inference-toolkit functions (``model_fn``,
  ``input_fn``, ``predict_fn``, ``output_fn``) that ``code/inference.py`` of a model archive exposes;
- :mod:`workflow.serving.toolkit`: loads ``code/inference.py`` from an unpacked ``model.tar.gz`` the way
  the toolkit does, and runs the four functions per request (the local endpoint and the BYO server);
- :mod:`workflow.serving.package`: builds the model archive (``autolabel endpoint package``);
- :mod:`workflow.serving.container`: the framework container it runs in and its image URI (SDK);
- :mod:`workflow.serving.deploy`: upload and ``sam deploy --parameter-overrides``;
- :mod:`workflow.serving.byo`: the model server of the bring-your-own container (``docker/serving``).
"""
