"""`InputSpec`: an API's request side, built once at decoration from its signature.

The parameters become one `TypedDict` (named "Input", in parameter order, defaults and
`pydantic.Field`s kept) behind one `TypeAdapter`, so decoding a JSON body is a single
pydantic-core `validate_json` call that returns the call's keyword arguments directly; the
custom types (arrays, DataFrames, files, images) are `Annotated` validators inside it.

Wire forms, as BentoML's client sends them (reference/bentoml.md §2.2, §10 A.4):
- JSON object keyed by parameter name (`from_json`); unknown keys ignored, empty body = `{}`.
- multipart/form-data or urlencoded (`from_form`): file fields are parts (repeated for
  `list[Path]`); other fields are JSON texts (`json.dumps(value)`) with a raw-string fallback.
- A single positional-only parameter is a root input (`from_root`): `str`, `bytes`, files and
  images take the raw body, anything else the JSON value of the body.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict

from nbserve._sdk.io import annotations as ann
from nbserve._sdk.io.errors import ErrorContext, invalid_argument
from nbserve._sdk.io.jsonschema import QuietJsonSchema, flatten
from nbserve._sdk.io.payload import UploadedFile
from nbserve._sdk.io.schema_objects import to_openapi
from nbserve._sdk.io.signature import (
    EMPTY,
    SCHEMA_ERRORS,
    Param,
    api_params,
    first_line,
    qualname,
    type_name,
)
from nbserve.exceptions import InvalidArgument, ServiceDefinitionError

_URLENCODED = "application/x-www-form-urlencoded"

__all__ = ["InputSpec", "input_spec_for"]

_ROOT_MEDIA = {
    "text": "text/plain",
    "bytes": "application/octet-stream",
    "json": "application/json",
}


def _compile(source: Any) -> TypeAdapter[Any]:
    """The validator for an input: a dict of parameter annotations becomes one TypedDict."""
    if isinstance(source, dict):
        # Functional syntax: parameter names need not be valid class-body names.
        make_typed_dict: Any = TypedDict
        return TypeAdapter(make_typed_dict("Input", source))
    return TypeAdapter(source)


class InputSpec:
    """How one API reads its request. Built by `input_spec_for`; see docs/internals.md.

    Pickles as its recipe (`source`: the annotations, not the compiled validator): plain
    pickle works when the types it names are importable, cloudpickle always."""

    def __init__(
        self,
        *,
        source: Any,
        fields: tuple[str, ...],
        root: bool = False,
        root_kind: ann.Kind = "json",
        root_default: Any = EMPTY,
        root_media_type: str | None = None,
        file_fields: frozenset[str] = frozenset(),
        str_fields: frozenset[str] = frozenset(),
        list_fields: frozenset[str] = frozenset(),
        model: type[BaseModel] | None = None,
    ) -> None:
        self.fields = fields
        self.root = root
        self.file_fields = file_fields
        self.multipart = bool(file_fields) and not root
        self._source = source
        adapter = _compile(source)
        self._validator = adapter.validator
        self._root_kind = root_kind
        self._root_default = root_default
        self._str_fields = str_fields
        self._list_fields = list_fields
        self._model = model
        schema = flatten(adapter.json_schema(schema_generator=QuietJsonSchema))
        if root:
            schema["root_input"] = True
        self._schema = schema
        self._openapi_schema = adapter.json_schema(
            mode="serialization", schema_generator=QuietJsonSchema
        )
        self._errors = ErrorContext.build(schema, root=root)
        if root:
            self.media_type = root_media_type or _ROOT_MEDIA.get(
                root_kind, "application/octet-stream"
            )
        else:
            self.media_type = "multipart/form-data" if self.multipart else "application/json"

    def __repr__(self) -> str:
        return f"InputSpec(fields={self.fields!r}, root={self.root}, multipart={self.multipart})"

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_validator"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._validator = _compile(self._source).validator

    # -- schemas -------------------------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        """The validation-mode JSON schema `/schema.json` shows (a fresh copy)."""
        return copy.deepcopy(self._schema)

    def openapi(self, components: dict[str, Any]) -> dict[str, Any]:
        """The request body's OpenAPI `content` mapping; named models are added to
        `components` (the document's `components.schemas`)."""
        schema = to_openapi(self._openapi_schema, components)
        media: dict[str, Any] = {"schema": schema}
        encoding = {
            name: {"contentType": "application/json"}
            for name in self.fields
            if name not in self.file_fields
        }
        if self.multipart and encoding:
            # Non-file parts carry JSON, as BentoML's client sends them.
            media["encoding"] = encoding
        return {self.media_type: media}

    # -- decoding ------------------------------------------------------------------------

    def from_json(self, body: bytes) -> dict[str, Any]:
        """Call kwargs from a JSON body (validated: nothing else to do before the call).
        For a root input this reads the body as `from_root` does; a root file input needs
        `from_root` itself, for its content type and temporary directory."""
        if self.root:
            if self._root_kind in ("file", "image"):
                msg = "this API's input is a file: decode its body with from_root(body, content_type, temp_dir)"
                raise TypeError(msg)
            return self.from_root(body, "application/json", None)
        try:
            values = self._validator.validate_json(body or b"{}")
        except ValidationError as exc:
            raise invalid_argument(exc, self._errors) from None
        return values if self._model is None else self._model_kwargs(values)

    def from_form(
        self,
        fields: Mapping[str, list[str]],
        files: Mapping[str, list[UploadedFile]],
        temp_dir: Path,
    ) -> dict[str, Any]:
        """Call kwargs from a multipart or urlencoded form. Uploaded files are written under
        `temp_dir` (the request's `Context.temp_dir`)."""
        if self.root:
            upload = next((parts[-1] for parts in files.values() if parts), None)
            if upload is None or self._root_kind not in ("file", "image"):
                msg = f"This API takes the raw request body as its input ({self.media_type}), not a form; send the value itself as the body"
                raise InvalidArgument(msg)
            return self._root(upload, temp_dir)
        values: dict[str, Any] = {}
        for name in self.fields:
            listed = name in self._list_fields
            if name in self.file_fields and files.get(name):
                parts = files[name]
                values[name] = list(parts) if listed else parts[-1]
                continue
            texts = fields.get(name)
            if not texts and files.get(name):
                # A non-file input sent as a file part (curl -F 'text=@notes.txt').
                texts = [part.read_bytes().decode("utf-8", "replace") for part in files[name]]
            if texts:
                values[name] = self._form_value(name, texts, listed)
        return self._validate(values, temp_dir)

    def from_root(self, body: bytes, content_type: str, temp_dir: Path | None) -> dict[str, Any]:
        """Call kwargs for a root input from the raw body and its `Content-Type`."""
        if not self.root:
            msg = "from_root() is for APIs with a single positional-only input; use from_json() or from_form()"
            raise TypeError(msg)
        kind = self._root_kind
        if not body and self._root_default is not EMPTY:
            return {self.fields[0]: self._root_default}
        if content_type.partition(";")[0].strip().lower() == _URLENCODED and kind != "file":
            return self._from_urlencoded(body, kind)
        if kind == "json":
            if not body:
                msg = f"Request body is empty; this API takes its input as the whole body: send {self._errors.root_hint[0]}, e.g. {self._errors.example_body}"
                raise InvalidArgument(msg)
            try:
                return {self.fields[0]: self._validator.validate_json(body)}
            except ValidationError as exc:
                raise invalid_argument(exc, self._errors) from None
        if kind == "text":
            charset = _charset(content_type)
            try:
                value: Any = body.decode(charset)
            except (UnicodeDecodeError, LookupError) as exc:
                msg = f"Request body is not valid {charset} text ({exc}); send text, or declare the input as bytes"
                raise InvalidArgument(msg) from None
        elif kind == "bytes":
            value = body
        else:
            if not body:
                msg = "Request body is empty; send the file's bytes as the body, with its Content-Type"
                raise InvalidArgument(msg)
            value = UploadedFile("", content_type, body)
        return self._root(value, temp_dir)

    def _from_urlencoded(self, body: bytes, kind: str) -> dict[str, Any]:
        """A form-encoded body (what `curl -d` sends) is a form, as BentoML parses it: its
        fields can fill a structured root input, never a text or bytes one."""
        name = self.fields[0]
        if kind != "json":
            msg = f"this API takes its input {name!r} as the whole request body, but the body was sent form-encoded (application/x-www-form-urlencoded, what `curl -d` sends); send it as text with -H 'Content-Type: text/plain' --data-binary '...'"
            raise InvalidArgument(msg)
        fields = {
            k: v[-1] for k, v in parse_qs(body.decode("latin-1"), keep_blank_values=True).items()
        }
        try:
            return {name: self._validator.validate_python(fields)}
        except ValidationError as exc:
            raise invalid_argument(exc, self._errors) from None

    def validate(
        self, values: Mapping[str, Any], *, temp_dir: Path | None = None
    ) -> dict[str, Any]:
        """Call kwargs from Python values (an in-process call, not the wire): checks and
        converts them as a request would be. `temp_dir` is needed only for bytes given to a
        file input."""
        if self.root:
            name = self.fields[0]
            if name not in values:
                if self._root_default is EMPTY:
                    msg = f"1 validation error for Input: field '{name}' is required"
                    raise InvalidArgument(msg)
                return {name: self._root_default}
            return self._root(values[name], temp_dir)
        return self._validate(dict(values), temp_dir)

    # -- internals -----------------------------------------------------------------------

    def _validate(self, values: dict[str, Any], temp_dir: Path | None) -> dict[str, Any]:
        try:
            out = self._validator.validate_python(values, context={"temp_dir": temp_dir})
        except ValidationError as exc:
            raise invalid_argument(exc, self._errors) from None
        return out if self._model is None else self._model_kwargs(out)

    def _root(self, value: Any, temp_dir: Path | None) -> dict[str, Any]:
        try:
            return {
                self.fields[0]: self._validator.validate_python(
                    value, context={"temp_dir": temp_dir}
                )
            }
        except ValidationError as exc:
            raise invalid_argument(exc, self._errors) from None

    def _model_kwargs(self, instance: Any) -> dict[str, Any]:
        return {name: getattr(instance, name) for name in self.fields}

    def _form_value(self, name: str, texts: list[str], listed: bool) -> Any:
        parse: Callable[[str], Any] = _parse_text if name in self._str_fields else _parse_json
        if not listed:
            return parse(texts[-1])
        if len(texts) == 1:
            value = parse(texts[0])
            return value if isinstance(value, list) else [value]
        return [parse(text) for text in texts]


def _parse_json(text: str) -> Any:
    """A form value as JSON (BentoML's client sends `json.dumps(value)`), else the raw text."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _parse_text(text: str) -> Any:
    """A form value for a `str` input: verbatim, unless it is a JSON string literal."""
    if text.startswith('"'):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        if isinstance(value, str):
            return value
    return text


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def _unsupported(where: str, param: Param, exc: Exception) -> ServiceDefinitionError:
    if isinstance(exc, ServiceDefinitionError):
        return ServiceDefinitionError(f"{where}: parameter '{param.name}': {exc}")
    msg = f"{where}: parameter '{param.name}' has type {type_name(param.hint)}, which nbserve cannot read from a request ({first_line(exc)}); use a JSON type (str, int, float, bool, list, dict), a pydantic model, np.ndarray, pd.DataFrame, torch.Tensor, Path or PIL.Image.Image, or pass input_spec= to @api"
    return ServiceDefinitionError(msg)


def _built(make: Callable[[], InputSpec], where: str, params: list[Param]) -> InputSpec:
    """`make()`, with a pydantic schema failure turned into a declaration error naming the
    parameter at fault."""
    try:
        return make()
    except (*SCHEMA_ERRORS, ServiceDefinitionError) as exc:
        # Find the parameter to blame, so the message can name it.
        for param in params:
            try:
                TypeAdapter(ann.prepare(param.hint)).json_schema(schema_generator=QuietJsonSchema)
            except (*SCHEMA_ERRORS, ServiceDefinitionError) as inner:
                raise _unsupported(where, param, inner) from None
        msg = f"{where}: cannot build the input schema ({exc}); pass input_spec= to @api"
        raise ServiceDefinitionError(msg) from None


def input_spec_for(
    func: Callable[..., Any],
    *,
    ctx_param: str | None = None,
    input_spec: type[BaseModel] | None = None,
) -> InputSpec:
    """Build the `InputSpec` of an API from its signature (or from an explicit `input_spec`
    model). `func` is the function as written in the class body (`self` first)."""
    where = qualname(func)
    if input_spec is not None:
        return _model_spec(func, input_spec, ctx_param, where)
    params = api_params(func, ctx_param=ctx_param)
    file_fields = frozenset(p.name for p in params if ann.is_file_annotation(p.hint))
    if params and params[0].positional_only:
        (param,) = params
        tp = ann.prepare(param.hint)
        info = param.field_info
        default = (
            EMPTY
            if info is None or info.is_required()
            else info.get_default(call_default_factory=True)
        )
        return _built(
            lambda: InputSpec(
                source=Annotated[tp, info] if info is not None else tp,
                fields=(param.name,),
                root=True,
                root_kind=ann.kind_of(param.hint),
                root_default=default,
                root_media_type=_root_media_type(param.hint),
                file_fields=file_fields,
            ),
            where,
            params,
        )
    annotations: dict[str, Any] = {}
    for param in params:
        tp = ann.prepare(param.hint)
        info = param.field_info
        if info is not None:
            tp = Annotated[tp, info]
        annotations[param.name] = tp if param.required else NotRequired[tp]
    return _built(
        lambda: InputSpec(
            source=annotations,
            fields=tuple(annotations),
            file_fields=file_fields,
            str_fields=frozenset(p.name for p in params if ann.is_str_annotation(p.hint)),
            list_fields=frozenset(p.name for p in params if ann.is_list_annotation(p.hint)),
        ),
        where,
        params,
    )


def _root_media_type(hint: Any) -> str | None:
    kind = ann.kind_of(hint)
    content_type = ann.content_type_of(ann.split_annotated(hint)[1])
    if kind in ("file", "image"):
        return content_type or ("image/*" if kind == "image" else "application/octet-stream")
    return content_type


def _model_spec(
    func: Callable[..., Any], model: type[BaseModel], ctx_param: str | None, where: str
) -> InputSpec:
    given: Any = model  # typed as a model class, but this is where a wrong one is caught
    if not (isinstance(given, type) and issubclass(given, BaseModel)):
        msg = f"{where}: input_spec={model!r} must be a pydantic BaseModel subclass whose fields are the API's parameters"
        raise ServiceDefinitionError(msg)
    patched = ann.patch_model(model)
    fields = tuple(patched.model_fields)
    parameters = list(inspect.signature(func).parameters.values())[1:]
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters)
    named = {
        p.name: p.default is EMPTY
        for p in parameters
        if p.name != ctx_param and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }
    unknown = [f for f in fields if f not in named and not takes_kwargs]
    missing = [name for name, required in named.items() if required and name not in fields]
    if unknown or missing:
        problems = []
        if unknown:
            problems.append(
                f"input_spec field(s) {', '.join(map(repr, unknown))} are not parameters of the function"
            )
        if missing:
            problems.append(
                f"required parameter(s) {', '.join(map(repr, missing))} are not fields of {model.__name__}"
            )
        msg = f"{where}: {'; '.join(problems)}; the function is called with the model's fields as keyword arguments, so make them match"
        raise ServiceDefinitionError(msg)
    hints = {n: f.annotation for n, f in patched.model_fields.items()}
    return _built(
        lambda: InputSpec(
            source=patched,
            fields=fields,
            file_fields=frozenset(n for n, h in hints.items() if ann.is_file_annotation(h)),
            str_fields=frozenset(n for n, h in hints.items() if ann.is_str_annotation(h)),
            list_fields=frozenset(n for n, h in hints.items() if ann.is_list_annotation(h)),
            model=patched,
        ),
        where,
        [],
    )
