"""TensorFlow Serving's REST "predict" format, applied to a loaded SavedModel (for tests and examples).

TensorFlow Serving answers `POST /v1/models/<name>:predict` with a JSON body
in its row ("instances") format:

    {"signature_name": "translate_beam", "instances": ["A man is riding a bike."]}
    -> {"predictions": ["Ein Mann fährt Fahrrad."]}

A signature with several inputs takes one object per instance
(`{"instances": [{"encoder_token_ids": [2, 17, 3]}]}`); with several
outputs, each prediction is an object keyed by output name. `predict` does
the same conversion in process, so a request body can be checked against an
export without a server.
"""

import numpy as np
import tensorflow as tf

DEFAULT_SIGNATURE = "serving_default"


class RequestError(ValueError):
    """A request body TensorFlow Serving would refuse (HTTP 400)."""


def predict(loaded, body):
    """The response TensorFlow Serving gives for `body` (a dict, parsed JSON) on `loaded` (`tf.saved_model.load`)."""
    name = body.get("signature_name", DEFAULT_SIGNATURE)
    if name not in loaded.signatures:
        raise RequestError(f"Serving signature name: {name!r} not found in signature def. Known: {sorted(loaded.signatures)}")
    function = loaded.signatures[name]
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RequestError('The request must hold "instances": a non-empty list.')
    specs = function.structured_input_signature[1]
    if len(specs) == 1 and not isinstance(instances[0], dict):
        instances = [{next(iter(specs)): instance} for instance in instances]
    inputs = {}
    for key, spec in specs.items():
        try:
            inputs[key] = tf.constant([instance[key] for instance in instances], dtype=spec.dtype)
        except (KeyError, TypeError) as error:
            raise RequestError(f"Every instance must give {key!r} ({spec.dtype.name}): {error}") from None
    outputs = {key: value.numpy() for key, value in function(**inputs).items()}
    rows = [{key: _json(value[i]) for key, value in outputs.items()} for i in range(len(instances))]
    if len(outputs) == 1:
        rows = [next(iter(row.values())) for row in rows]
    return {"predictions": rows}


def _json(value):
    """A numpy value as JSON's types: bytes as UTF-8 text, arrays as nested lists."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_json(v) for v in value] if value.dtype == object else value.tolist()
    return value.item() if isinstance(value, np.generic) else value
