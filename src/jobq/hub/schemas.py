"""Payload schemas that workers advertise for their services (JSON Schema).

A submit for a service with an advertised schema must carry a JSON payload that the schema
accepts; anything else is refused at once, with the reason, before it is queued.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from jobq.core.model import JobSpec
from jobq.errors import InvalidRequest


class SchemaRegistry:
    def __init__(self) -> None:
        self._validators: dict[str, Draft202012Validator] = {}
        self._schemas: dict[str, Any] = {}

    def advertise(self, schemas: dict[str, Any]) -> None:
        """A worker advertised these (service → schema); the latest one wins."""
        for service, schema in schemas.items():
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                raise InvalidRequest(
                    f"the schema for {service} is not a valid JSON Schema: {exc.message}"
                ) from None
            self._validators[service] = Draft202012Validator(schema)
            self._schemas[service] = schema

    def schema(self, service: str) -> Any:
        return self._schemas.get(service)

    def check(self, spec: JobSpec) -> None:
        validator = self._validators.get(spec.service)
        if validator is None:
            return
        try:
            document = json.loads(b"".join(spec.payload) or b"null")
        except ValueError:
            raise InvalidRequest(f"{spec.service} takes a JSON payload matching its schema") from None
        error = next(iter(validator.iter_errors(document)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "payload"
            raise InvalidRequest(f"{spec.service}: {where}: {error.message}")
