"""The Label Studio webhook Lambda behind its Function URL, with its secret in Secrets Manager (moto).

The request goes through the local Function URL (the Function URL event, payload 2.0) to the
handler named in template.yaml, which reads the API token and the shared secret from the secret
``LabelStudioSecretArn`` names, as in AWS.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from workflow.domain.errors import ConfigurationError
from workflow.settings import Settings
from workflow.steps.review_labelstudio import SECRET_HEADER, label_studio_access

SECRET = "a-webhook-secret-of-enough-length"


def post(url: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


@pytest.fixture(scope="module")
def cloud(local_cloud: Callable[..., Any]) -> Any:
    cloud = local_cloud({}, parameters={"LabelStudioUrl": "http://127.0.0.1:9"})
    import boto3

    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    arn = secrets.create_secret(
        Name="label-studio", SecretString=json.dumps({"api_token": "pat", "webhook_secret": SECRET})
    )["ARN"]
    cloud.set_environment({"LABEL_STUDIO_SECRET_ARN": arn})
    cloud.secret_arn = arn
    return cloud


def test_the_function_url_refuses_a_webhook_without_the_secret_of_secrets_manager(cloud: Any) -> None:
    # Given the webhook function's URL (template FunctionUrlConfig) and its secret in Secrets Manager
    url = cloud.function_urls["LabelStudioWebhookFunction"].url
    body = {"action": "ANNOTATION_CREATED", "project": {"id": 1}}
    # When Label Studio calls it with a wrong secret, or none, Then it is refused
    assert post(url, {SECRET_HEADER: "not-the-secret-at-all"}, body)[0] == 403
    assert post(url, {}, body)[0] == 403
    # When it comes with the secret for a project no run waits on, Then it is accepted and ignored
    status, text = post(url, {SECRET_HEADER: SECRET}, body)
    assert status == 200 and "no review job" in text


def test_the_secret_must_be_json_with_a_long_webhook_secret(cloud: Any) -> None:
    import boto3

    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    settings = Settings.from_env()
    assert label_studio_access(settings, secrets).webhook_secret == SECRET
    plain = secrets.create_secret(Name="plain", SecretString="just-a-token")["ARN"]
    with pytest.raises(ConfigurationError, match="must be JSON"):
        label_studio_access(settings.model_copy(update={"label_studio_secret_arn": plain}), secrets)
    short = secrets.create_secret(
        Name="short", SecretString=json.dumps({"api_token": "t", "webhook_secret": "x"})
    )
    with pytest.raises(ConfigurationError, match="at least 16"):
        label_studio_access(settings.model_copy(update={"label_studio_secret_arn": short["ARN"]}), secrets)
