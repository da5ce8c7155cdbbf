"""Errors in OpenAI's envelope everywhere; the models list and aliases."""

from __future__ import annotations

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration


def envelope(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_unknown_route_wrong_method_and_bad_query(server, assert_matches_spec):
    unknown = httpx.get(f"{server.base_url}/nothing/here")
    assert unknown.status_code == 404 and "GET /v1/nothing/here" in envelope(unknown)["message"]
    assert_matches_spec(unknown.json(), "ErrorResponse")
    wrong = httpx.put(f"{server.base_url}/files")
    assert wrong.status_code == 405 and envelope(wrong)["code"] == "method_not_allowed"
    bad = httpx.get(f"{server.base_url}/files", params={"limit": "many"})
    assert bad.status_code == 400
    error = envelope(bad)
    assert error["param"] == "limit" and error["type"] == "invalid_request_error"
    assert "Traceback" not in bad.text
    bad_order = httpx.get(f"{server.base_url}/files", params={"order": "sideways"})
    assert bad_order.status_code == 400 and envelope(bad_order)["param"] == "order"


def test_models_list_base_and_aliases(server, assert_matches_spec):
    client = server.client()
    models = {m.id: m for m in client.models.list()}
    assert "smollm2-135m-instruct" in models
    for alias in ("gpt-4o-mini-2024-07-18", "gpt-4.1-nano-2025-04-14", "gpt-3.5-turbo", "babbage-002", "davinci-002"):
        assert models[alias].alias_for == "smollm2-135m-instruct"
    retrieved = client.models.retrieve("gpt-4o-mini-2024-07-18")
    assert retrieved.id == "gpt-4o-mini-2024-07-18" and retrieved.owned_by == "tunehouse"
    assert_matches_spec(httpx.get(f"{server.base_url}/models").json(), "ListModelsResponse")
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("no-such-model")
    assert err.value.body["code"] == "model_not_found"
    slashed = httpx.get(f"{server.base_url}/models/org%2Fmodel")
    assert slashed.status_code == 404 and "org/model" in envelope(slashed)["message"]
