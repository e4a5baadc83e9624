"""SigV4 for function URLs with IAM auth (service ``lambda``), using botocore's signer."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

_FUNCTION_URL_HOST = re.compile(r"^[a-z0-9]+\.lambda-url\.(?P<region>[a-z0-9-]+)\.on\.aws$")


def function_url_region(url: str) -> str | None:
    """The region of a Lambda function URL, or ``None`` when the URL is not one (a local URL)."""
    match = _FUNCTION_URL_HOST.match(urlsplit(url).hostname or "")
    return match["region"] if match else None


class MissingCredentials(RuntimeError):
    pass


def sign_headers(method: str, url: str, body: bytes, headers: dict[str, str], region: str) -> dict[str, str]:
    """Headers with SigV4 ``Authorization`` (and session token) added, from the default credential chain."""
    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise MissingCredentials(
            "the function URL uses IAM auth but no AWS credentials were found "
            "(set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws sso login`)"
        )
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "lambda", region).add_auth(request)
    return dict(request.headers.items())
