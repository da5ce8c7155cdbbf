"""schemathesis hooks for tests/integration/test_fuzz.py: every error answer is OpenAI's envelope."""

import schemathesis


@schemathesis.check
def openai_error_envelope(ctx, response, case):
    if response.status_code < 400:
        return None
    body = response.json()
    assert set(body) == {"error"}, f"not an error envelope: {body}"
    assert set(body["error"]) == {"message", "type", "param", "code"}, f"envelope fields: {body['error']}"
    assert "Traceback" not in response.text
    return None
