"""The IO layer: an API's input and output schemas and their wire codecs.

Built once per API when its class is decorated (`input_spec_for`, `output_spec_for`); the
runtime then only calls `InputSpec.from_json` / `from_form` / `from_root` and
`OutputSpec.encode` / `encode_item` per request. The contract is in docs/internals.md
("IO layer"); the wire forms follow BentoML 1.4 so its client works unchanged.

Module map: `signature` (reading the function), `annotations` (which wire form a type takes),
`tensor` / `dataframe` / `files` (the custom types), `jsonschema` and `openapi` (the published
schemas), `errors` (messages a client reads), `encoding` (JSON out), `inputs` / `outputs` (the
two specs), `payload` (the plain values exchanged with the runtime).
"""

from nbserve._sdk.io.inputs import InputSpec, input_spec_for
from nbserve._sdk.io.outputs import OutputSpec, output_spec_for
from nbserve._sdk.io.payload import Payload, UploadedFile

__all__ = [
    "InputSpec",
    "OutputSpec",
    "Payload",
    "UploadedFile",
    "input_spec_for",
    "output_spec_for",
]
