"""Credentials are masked in URIs, free text and summaries; everything else is left as it was."""

import pytest

from pipelines.storage.redact import redact, redact_text, redact_uri, secret_values


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("https://alice:s3cr3t@example.com/images/a.jpg", "https://REDACTED@example.com/images/a.jpg"),
        ("https://ghp_tokenonly@example.com/a.jpg", "https://REDACTED@example.com/a.jpg"),
        ("https://bucket.s3.amazonaws.com/a.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261122"
         "&X-Amz-Date=20261122T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=abc123",
         "https://bucket.s3.amazonaws.com/a.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED"
         "&X-Amz-Date=20261122T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=REDACTED"),
        ("https://storage.googleapis.com/b/a.jpg?X-Goog-Signature=0f1e&X-Goog-Credential=sa%40p.iam",
         "https://storage.googleapis.com/b/a.jpg?X-Goog-Signature=REDACTED&X-Goog-Credential=REDACTED"),
        ("https://acct.blob.core.windows.net/c/a.jpg?sv=2024-11-04&sp=r&sig=Zm9v%3D",
         "https://acct.blob.core.windows.net/c/a.jpg?sv=2024-11-04&sp=r&sig=REDACTED"),
        ("https://api.example.com/x?access_token=t0k&page=2&api_key=k3y", "https://api.example.com/x?access_token=REDACTED"
         "&page=2&api_key=REDACTED"),
        # nothing to mask: kept byte for byte
        ("gs://bucket/raw/a@2x.jpg", "gs://bucket/raw/a@2x.jpg"),
        ("file:///data/with space/ünï@.jpg", "file:///data/with space/ünï@.jpg"),
        ("s3://bucket/shard.tar#../escaped.jpg", "s3://bucket/shard.tar#../escaped.jpg"),
        ("file:///in/images.parquet#row_hash=00ff", "file:///in/images.parquet#row_hash=00ff"),
    ],
)
def test_uri_credentials_are_masked(uri, expected):
    assert redact_uri(uri) == expected


def test_uris_inside_messages_are_masked():
    message = "input not found: https://bob:pw@host:8443/dir/ (then 'https://host/b?token=xyz')"
    assert redact_text(message, environ={}) == (
        "input not found: https://REDACTED@host:8443/dir/ (then 'https://host/b?token=REDACTED')")


def test_secret_environment_values_are_masked_wherever_they_appear():
    environ = {"HF_TOKEN": "hf_abcdefghijklmnop", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
               "RAY_AUTH_TOKEN": "0123456789abcdef", "FSSPEC_GCS_TOKEN": "anon", "HOME": "/home/someone-long"}
    assert secret_values(environ) == ["wJalrXUtnFEMI/K7MDENG", "hf_abcdefghijklmnop", "0123456789abcdef"]
    text = "401 for hf_abcdefghijklmnop; key wJalrXUtnFEMI/K7MDENG; anon in /home/someone-long"
    assert redact_text(text, environ) == "401 for REDACTED; key REDACTED; anon in /home/someone-long"


def test_a_summary_is_redacted_throughout():
    summary = {"input": "https://u:p@h/a.jpg", "rows": 3, "tasks": ["caption"], "error": None,
               "nested": {"vae": "https://h/v.npz?X-Goog-Signature=s1g"}, "pair": ("hf_abcdefghijk", 1)}
    assert redact(summary, environ={"HF_TOKEN": "hf_abcdefghijk"}) == {
        "input": "https://REDACTED@h/a.jpg", "rows": 3, "tasks": ["caption"], "error": None,
        "nested": {"vae": "https://h/v.npz?X-Goog-Signature=REDACTED"}, "pair": ("REDACTED", 1)}
