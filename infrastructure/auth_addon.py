"""mitmproxy addon: logs in to the service once and injects the credential into every request.

Some services (blog: JWT; market: session cookie) answer almost everything with 401/403 unless the
client is logged in, which tools cannot do on their own. Enabled by the supervisor when
``AUTH_STEPS`` is set, to a JSON object:

    {"steps": [{"method": "POST", "path": "/api/auth/signup", "json": {...}},
               {"method": "POST", "path": "/api/auth/signin", "json": {...},
                "token_json": "accessToken"}],
     "header": "Authorization", "template": "Bearer {token}"}

Each step is sent straight to the service (``http://127.0.0.1:SERVICE_PORT``, not through the proxy,
so it is not recorded as tool traffic). A step may take the token from a JSON field of its answer
(``token_json``, dotted path) or from a cookie it sets (``token_cookie``); ``form`` sends an
url-encoded body instead of ``json``. Steps answering with an error are tolerated (a sign-up of an
existing user fails harmlessly) as long as a later step yields the token. The login happens on the
first request and is retried on later requests until it succeeds. Requests that already carry the
header are left alone, unless ``"replace": true``: then the header is always overwritten (market: RESTgym's
own market addon, SeUniVr/RESTgym apis/market/auth.py, always sets the Cookie).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from http.cookies import SimpleCookie
from typing import Any

from mitmproxy import http

log = logging.getLogger(__name__)


def extract_json(body: bytes, dotted: str) -> str | None:
    try:
        value: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return None if value is None else str(value)


def extract_cookie(headers: Any, name: str) -> str | None:
    for raw in headers.get_all("Set-Cookie") or []:
        jar: SimpleCookie = SimpleCookie()
        jar.load(raw)
        if name in jar:
            return jar[name].value
    return None


class AuthInjector:
    def __init__(self) -> None:
        self.config: dict[str, Any] = json.loads(os.environ.get("AUTH_STEPS", "{}") or "{}")
        self.base = f"http://127.0.0.1:{os.environ.get('SERVICE_PORT', '8080')}"
        self.value: str | None = None

    def login(self) -> str | None:
        token: str | None = None
        for step in self.config.get("steps", []):
            url = self.base + step["path"]
            headers = {"Accept": "application/json"}
            data = None
            if "json" in step:
                data = json.dumps(step["json"]).encode()
                headers["Content-Type"] = "application/json"
            elif "form" in step:
                data = urllib.parse.urlencode(step["form"]).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            # Our own loopback http URL, built from SERVICE_PORT and the image's configuration.
            req = urllib.request.Request(url, data=data, headers=headers, method=step.get("method", "POST"))  # noqa: S310
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                    status, body, resp_headers = resp.status, resp.read(), resp.headers
            except urllib.error.HTTPError as exc:
                status, body, resp_headers = exc.code, exc.read(), exc.headers
            except OSError as exc:
                log.warning("auth step %s failed: %s", step["path"], exc)
                return None
            found = None
            if "token_json" in step:
                found = extract_json(body, step["token_json"])
            if "token_cookie" in step:
                found = extract_cookie(resp_headers, step["token_cookie"])
            log.warning("auth step %s %s: %s", step.get("method", "POST"), step["path"], status)
            token = found or token
        if token is None:
            return None
        return str(self.config.get("template", "{token}")).format(token=token)

    def request(self, flow: http.HTTPFlow) -> None:
        header = str(self.config.get("header", "Authorization"))
        if self.value is None:
            self.value = self.login()
        if self.value is None:
            return
        if bool(self.config.get("replace", False)) or header not in flow.request.headers:
            flow.request.headers[header] = self.value


addons = [AuthInjector()]
