"""The OpenAPI description: our token scheme, and the error answers every operation can give.

drf-spectacular documents only the success answers by itself; a client (and the schemathesis
test) needs the error answers too, with their bodies.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from api.serializers import ErrorSerializer

VALIDATION_ERROR = {
    "type": "object",
    "description": "Field names (or non_field_errors, or detail) with what is wrong with them.",
    "additionalProperties": True,
}


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A person's API token or a domain's API key: "
            "`Authorization: Bearer pbx_…` (`Token pbx_…` works too).",
        }


class ApiAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response") -> dict:
        responses = super()._get_response_bodies(direction)
        errors = {"401": "Not signed in, or an unknown key.", "403": "Not allowed."}
        if self.method != "GET" or any(p["in"] == "query" for p in self._get_parameters()):
            errors["400"] = "Bad input."
        parameters = {p["name"] for p in self._get_parameters()}
        if "{" in self.path or "cursor" in parameters:
            errors["404"] = "No such domain or extension (or not one of yours), or a bad cursor."
        if self.method in ("POST", "PUT", "PATCH"):
            errors["415"] = "The body is not JSON."
        if self.path.endswith("/call/"):
            errors["409"] = "The extension is disabled."
        for code, description in errors.items():
            schema = VALIDATION_ERROR if code == "400" else ErrorSerializer
            response = self._get_response_for_code(schema, code, direction=direction)
            responses.setdefault(code, {**response, "description": description})
        return dict(sorted(responses.items()))
