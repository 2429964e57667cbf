"""Run in a separate interpreter (``python -S``): serve requests with an unpacked model archive alone.

``sys.path`` holds only the standard library, the archive's ``code/`` folder and the folder its wheels
were installed into (PYTHONPATH), as in the container. Imports ``inference`` as the toolkit does,
calls ``model_fn`` once and the other three functions per request; prints, as JSON, the answers and
where every imported module came from.

    python -S toolkit_process.py MODEL_DIR REQUESTS.json
"""

import base64
import importlib
import json
import sys


def main(model_dir: str, requests_file: str) -> None:
    with open(requests_file, encoding="utf-8") as handle:
        requests = json.load(handle)
    module = importlib.import_module("inference")
    model = module.model_fn(model_dir)
    answers = {}
    for name, content_type, body in requests:
        try:
            data = module.input_fn(base64.b64decode(body), content_type)
            text, _ = module.output_fn(module.predict_fn(data, model), "application/json")
        except Exception as exc:
            answers[name] = {"failed": [exc.kind, exc.reason]}
            continue
        answers[name] = {"ok": json.loads(text)}
    origins = {
        name: getattr(mod, "__file__", None)
        for name, mod in list(sys.modules.items())
        if name.split(".")[0]
        in ("workflow", "numpy", "onnxruntime", "onnx", "PIL", "pydantic", "boto3", "botocore")
    }
    print(json.dumps({"answers": answers, "origins": origins}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
