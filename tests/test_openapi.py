"""/openapi.json describes every route the app has, and schemathesis fuzzes the API from it:
no 500s, and every answer matches the document (status, content type, body schema)."""
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from web.openapi import OPERATIONS, UNDOCUMENTED

FUZZ_EXAMPLES = 25  # per operation; ~30 operations, so ~750 requests in-process
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]
RUN = {"operations": 0, "examples": 0}


def test_openapi_lists_every_route_and_nothing_else(app, client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"] == "3.0.3"
    served = {(rule.endpoint, method.lower()) for rule in app.url_map.iter_rules()
              if rule.endpoint not in UNDOCUMENTED for method in rule.methods - {"HEAD", "OPTIONS"}}
    described = {(endpoint, method) for endpoint, methods in OPERATIONS.items() for method in methods}
    assert served == described
    listed = {operation["operationId"] for path in document["paths"].values() for operation in path.values()}
    assert listed == {f"{endpoint}.{method}" for endpoint, method in served}
    assert document["paths"]["/load_conversation/{conversation_id}"]["get"]["parameters"][0]["in"] == "path"


@pytest.fixture(scope="module", autouse=True)
def report_fuzzing():
    """Prints how many generated requests were sent (the closing note quotes it)."""
    yield
    if RUN["examples"]:
        print(f"\nschemathesis: {RUN['examples']} generated requests, no 500s, every answer as documented")


@pytest.fixture
def api_schema(make_app):
    return schemathesis.openapi.from_wsgi("/openapi.json", make_app())


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_openapi_fuzzed_api_never_fails_and_matches_its_document(case):
    case.call_and_validate(checks=CHECKS)
    RUN["examples"] += 1
