"""JSON form of the frozen parameter dataclasses (FeatureSpec, SpeechActivityParams): dict and
JSON out, dict and JSON in with one-line errors for a non-object, unknown fields or bad JSON.

    @dataclasses.dataclass(frozen=True)
    class Spec(JsonFields):
        _ERROR = SpecError                              # the class's own error
        _OBJECT = "a FeatureSpec is"                    # "<_OBJECT> a JSON object of fields"
        _NAME = "FeatureSpec"                           # "unknown <_NAME> fields", ...
"""

from __future__ import annotations

import dataclasses
import json


class JsonFields:
    _ERROR: type[Exception] = ValueError
    _OBJECT = "parameters are"
    _NAME = "parameter"

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise cls._ERROR(f"{cls._OBJECT} a JSON object of fields, got {type(data).__name__}")
        unknown = sorted(map(str, set(data) - {f.name for f in dataclasses.fields(cls)}))
        if unknown:
            raise cls._ERROR(f"unknown {cls._NAME} fields: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise cls._ERROR(f"{cls._NAME} JSON does not parse: {err}") from None
        return cls.from_dict(data)
