"""Local mode: the real state machine, the real handlers, moto for AWS, real local services.

``LocalCloud`` starts moto in-process, creates the resources named in ``template.yaml`` (buckets,
tables, topics, functions, the EventBridge rule, the state machine from the ASL file with its
``DefinitionSubstitutions``), and binds what moto cannot run itself:

- every Lambda function to the handler the template names (moto's own Lambda needs Docker);
- ``InvokeEndpointAsync`` to a :class:`LocalAsyncEndpoint` that runs a real ONNX model and publishes
  the endpoint's SNS notifications (moto's version publishes nothing);
- ``CreateLabelingJob``/``DescribeLabelingJob`` to a :class:`LocalLabelingService` (moto has none);
- EventBridge rules with Lambda targets (moto delivers only to SQS, logs and buses);
- SendTaskFailure's ``cause``, which moto's response layer drops;
- Lambda Function URLs (``FunctionUrlConfig``), as HTTP receivers on 127.0.0.1 (``function_url.py``);
- atomic DynamoDB requests (moto checks a condition and writes in two steps, unsafe across threads).

Handlers run the same code, boto3 calls included, as in AWS.
"""

from __future__ import annotations

import copy
import functools
import gc
import importlib.util
import io
import json
import os
import sys
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.awslambda.models import LambdaFunction
from moto.core import responses as moto_responses
from moto.core import utils as moto_utils
from moto.core.base_backend import BaseBackend
from moto.core.exceptions import JsonRESTError
from moto.core.utils import get_service_model, method_names_from_class
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table as MotoTable
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
from moto.dynamodb.responses import DynamoHandler
from moto.events.models import Rule
from moto.s3.exceptions import MissingBucket
from moto.s3.models import FakeKey, S3Backend, s3_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse
from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3 import (
    ResourceEvalS3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval import (
    resource_eval_s3 as result_writer_s3,
)
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.responses import StepFunctionResponse
from pydantic import BaseModel

from workflow.adapters import aws as aws_adapters
from workflow.local.endpoint import LocalAsyncEndpoint, Predictor
from workflow.local.endpoint_http import ApiError, request_params
from workflow.local.function_url import FunctionUrlServer
from workflow.local.labeling import LocalLabelingService
from workflow.local.template import Resolver, Template
from workflow.local.workspace import Workspace

REGION = "us-east-1"
ACCOUNT = "123456789012"
PARTITION = "aws"  # moto keeps S3 per partition
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = PROJECT_ROOT / "template.yaml"
MOTO_SERVICES = (
    "s3",
    "dynamodb",
    "stepfunctions",
    "sns",
    "sqs",
    "lambda",
    "events",
    "sagemaker",
    "sagemaker-runtime",
)


_freeze_lock = threading.Lock()
_frozen_clouds = 0  # running clouds that froze the heap (see LocalCloud._freeze_heap)
_switch_interval = 0.005  # the interpreter's own, while no cloud runs
SWITCH_INTERVAL_S = 0.001


def build_deferred_models(modules: Iterable[ModuleType]) -> int:
    """Build the validators of the pydantic models defined in ``modules`` that defer their build
    (``defer_build``) and are not built yet; returns how many were built."""
    built = 0
    for module in modules:
        for value in list(vars(module).values()):
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == module.__name__
                and not value.__pydantic_complete__
                and value.model_rebuild()
            ):
                built += 1
    return built


@functools.cache
def _moto_package_names() -> dict[str, str]:
    return {name.replace("-", ""): name for name in botocore.session.Session().get_available_services()}


def _service_name_from_moto_package(package: str) -> str:
    """The service a moto package serves (``sagemakerruntime`` -> ``sagemaker-runtime``). moto 5.2.5
    builds this table anew (a botocore Session listing every service's data folder, about 30 ms)
    for each package's first error, in the run's first concurrent requests; here it is built once."""
    return _moto_package_names().get(package, package)


@dataclass
class LocalContext:
    """The parts of the Lambda context object that Powertools reads."""

    function_name: str
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"

    def __post_init__(self) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def _load_handler(code_dir: Path, handler: str) -> Callable[[dict[str, Any], Any], Any]:
    module_name, func_name = handler.rsplit(".", 1)
    path = code_dir / f"{module_name.replace('.', '/')}.py"
    spec = importlib.util.spec_from_file_location(f"autolabel_fn_{code_dir.name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load handler {handler} from {code_dir}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, func_name)  # type: ignore[no-any-return]


def _dummy_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.txt", "bound in-process by workflow.local.cloud")
    return buf.getvalue()


class LocalCloud:
    """Runs the workflow on this machine. Use as a context manager."""

    def __init__(
        self,
        endpoints: dict[str, Callable[[], Predictor]],
        *,
        template: Path = DEFAULT_TEMPLATE,
        review_mode: str = "simulate",
        review_dir: Path | None = None,
        parameters: dict[str, str] | None = None,
        max_concurrent_invocations: int = 2,
        workspace: Workspace | None = None,
    ) -> None:
        self.template = Template(template)
        self.workspace = workspace  # where tables and buckets persist between processes (else memory)
        self.endpoint_factories = endpoints
        self.review_mode = review_mode
        self.review_dir = review_dir
        self.parameters = {**self.template.parameter_defaults(), **(parameters or {})}
        self.parameters.setdefault("WorkteamArn", "")
        if not self.parameters["WorkteamArn"]:
            self.parameters["WorkteamArn"] = (
                f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/local"
            )
        self.max_concurrent_invocations = max_concurrent_invocations
        self.handlers: dict[str, Callable[[dict[str, Any], Any], Any]] = {}
        self.endpoints: dict[str, LocalAsyncEndpoint] = {}
        self.invocations: dict[str, int] = {}
        self.labeling: LocalLabelingService | None = None
        self.function_urls: dict[str, FunctionUrlServer] = {}
        self._patches: list[Any] = []
        self._env_backup: dict[str, str | None] = {}
        self._mock: Any = None
        self._lock = threading.Lock()
        self._event_threads: list[threading.Thread] = []
        self._ended = threading.Event()  # set whenever an execution ends (wait() wakes on it)
        self._persisted_buckets: set[str] = set()
        # Called with (bucket, key, body) for every object stored (progress reads its records here
        # instead of listing local S3).
        self.object_listeners: list[Callable[[str, str, bytes], None]] = []
        self._froze = False

    # --- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> LocalCloud:
        try:
            self.start()
        except BaseException:
            self.stop()  # a half-started cloud must not leave moto's mock (and its tables) active
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._set_env({"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION})
        # moto loads a service's botocore model at its first request (cached for the process, but
        # not locked: the run's first Map children all load sagemaker-runtime's at once); load each
        # service the workflow calls once, here.
        for service in MOTO_SERVICES:
            get_service_model(service)
        _moto_package_names()  # what moto's error answers look up (see _service_name_from_moto_package)
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        self._patch_moto()
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.events = boto3.client("events", region_name=REGION)
        self.lambda_ = boto3.client("lambda", region_name=REGION)
        refs, attrs = self._create_resources()
        if self.workspace is not None:
            self._restore_workspace(refs)
        resolver = Resolver(refs, attrs, self.template.data.get("Mappings", {}))
        env = {k: str(resolver(v)) for k, v in self.template.global_environment().items()}
        for fn in self.template.functions():  # one process: the functions' own variables join the globals
            env |= {k: str(resolver(v)) for k, v in fn.environment.items()}
        env |= {
            "POWERTOOLS_TRACE_DISABLED": "true",
            # the ledger's writes in transactions of 100: a sixth of the CPU here, no bill to double
            "LEDGER_TRANSACTIONS": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("AUTOLABEL_LOG_LEVEL", "WARNING"),
            "LOG_LEVEL": os.environ.get("AUTOLABEL_LOG_LEVEL", "WARNING"),
            # no IAM here: the local endpoints serve whatever models the run names
            "INVOKABLE_ENDPOINTS": "",
        }
        self._set_env(env)
        aws_adapters.reset()
        aws_adapters.logger.setLevel(env["LOG_LEVEL"])
        self.environment = env
        self._create_functions(resolver)
        self._create_endpoints(refs)
        self.labeling = LocalLabelingService(
            self.s3,
            self.events,
            REGION,
            ACCOUNT,
            review_mode=self.review_mode,  # type: ignore[arg-type]
            review_dir=self.review_dir,
        )
        self.state_machine_arn = self._create_state_machine(resolver)
        self.data_bucket = refs["DataBucket"]
        self._warm_handlers()
        self._freeze_heap()

    def _warm_handlers(self) -> None:
        """Leave the handlers as a warm Lambda's init leaves them, before any run: the SDK clients
        and adapters built (Lambda's advice: outside the handler) and the payload models' validators
        built. Each model defers its build to its first use (a Lambda builds only its own), so in one
        process every first use fell inside the run: 0.1 s of its first states (PrepareRun's build
        about 20 ms; the first InvokeModels of every Map child at once built the same ones)."""
        adapters = aws_adapters.aws()
        for built in ("settings", "s3", "tokens", "ledger", "callbacks", "endpoints"):
            getattr(adapters, built)
        build_deferred_models(
            m for name, m in list(sys.modules.items()) if name == "workflow" or name.startswith("workflow.")
        )

    def _freeze_heap(self) -> None:
        """Keep what the cloud's start left (about 380,000 objects: moto, botocore's models, the
        handlers' modules) out of the cyclic garbage collector's scans until the cloud stops. Each
        full collection walked all of them: 0.4-0.6 s, one to three times in a run of a few minutes,
        wherever in the run an allocation set it off. Objects of the run itself are still collected.

        While a cloud runs, the interpreter also hands its lock over every millisecond instead of
        every 5 (:data:`SWITCH_INTERVAL_S`): the cloud is many threads in one interpreter, and a thread
        back from a short wait (an endpoint worker with its model process's answer, a workspace
        write, a Lambda woken by its callback) waited up to the interval for a thread that computes;
        the model processes idled in that wait (measured: 2.1-2.5 ms a frame instead of 2.7-2.9)."""
        global _frozen_clouds, _switch_interval
        with _freeze_lock:
            if not self._froze:
                if _frozen_clouds == 0:
                    _switch_interval = sys.getswitchinterval()
                    sys.setswitchinterval(min(_switch_interval, SWITCH_INTERVAL_S))
                gc.freeze()
                self._froze = True
                _frozen_clouds += 1

    def stop(self) -> None:
        """Stop everything started, even when a part fails to stop (the first error is raised
        after the rest stopped): a cloud left half-stopped would keep moto's mock active, and
        every later cloud in the process would meet its resources."""
        errors: list[BaseException] = []

        def attempt(step: Callable[[], object]) -> None:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - raised once everything else is stopped
                errors.append(exc)

        for server in self.function_urls.values():
            attempt(server.close)
        self.function_urls.clear()
        for endpoint in self.endpoints.values():
            attempt(lambda e=endpoint: e.close(timeout=10))
        if self.labeling:
            attempt(self.labeling.stop)
        for patcher in reversed(self._patches):
            attempt(patcher.stop)
        self._patches.clear()
        if self._mock:
            attempt(self._mock.stop)
            self._mock = None
        for key, value in self._env_backup.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        aws_adapters.reset()
        self._thaw_heap()
        if errors:
            raise errors[0]

    def _thaw_heap(self) -> None:
        """What the starts froze is collectable again once the last running cloud stops."""
        global _frozen_clouds
        with _freeze_lock:
            if self._froze:
                self._froze = False
                _frozen_clouds -= 1
                if _frozen_clouds == 0:
                    gc.unfreeze()
                    sys.setswitchinterval(_switch_interval)

    def set_environment(self, values: dict[str, str]) -> None:
        """Variables the handlers read beyond the template's (restored when the cloud stops)."""
        self._set_env(values)
        aws_adapters.reset()
        self._warm_handlers()

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._env_backup.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    # --- resources from the template -----------------------------------------------------------
    def _create_resources(self) -> tuple[dict[str, str], dict[str, str]]:
        refs: dict[str, str] = dict(self.parameters)
        refs |= {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"}
        attrs: dict[str, str] = {}
        for name in self.template.of_type("AWS::S3::Bucket"):
            bucket = f"autolabel-local-{name.lower()}"
            self.s3.create_bucket(Bucket=bucket)
            refs[name], attrs[f"{name}.Arn"] = bucket, f"arn:aws:s3:::{bucket}"
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        for name, res in self.template.of_type("AWS::DynamoDB::Table").items():
            props = res["Properties"]
            dynamodb.create_table(**self.template.create_table_request(name))
            if "TimeToLiveSpecification" in props:
                dynamodb.update_time_to_live(
                    TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"]
                )
            refs[name], attrs[f"{name}.Arn"] = name, f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
        for name in self.template.of_type("AWS::SNS::Topic"):
            arn = self.sns.create_topic(Name=name)["TopicArn"]
            refs[name], attrs[f"{name}.TopicArn"] = arn, arn
        sqs = boto3.client("sqs", region_name=REGION)
        for name in self.template.of_type("AWS::SQS::Queue"):  # dead-letter queues
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            refs[name], attrs[f"{name}.Arn"] = url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
            attrs[f"{name}.QueueName"] = name
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="autolabel-local", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        self.role_arn = role
        for name in self.template.of_type("AWS::IAM::Role"):
            attrs[f"{name}.Arn"] = role
            refs[name] = "autolabel-local"
        for name in self.template.of_type("AWS::Serverless::LayerVersion"):
            refs[name] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}:1"
        for fn in self.template.functions():
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn.logical_id}"
            refs[fn.logical_id], attrs[f"{fn.logical_id}.Arn"] = fn.logical_id, arn
            if fn.function_url is not None:
                server = FunctionUrlServer(fn.logical_id, self._invoke)
                self.function_urls[fn.logical_id] = server
                attrs[f"{fn.logical_id}Url.FunctionUrl"] = server.url
        for name in self.template.of_type("AWS::Serverless::StateMachine"):
            refs[name] = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
        return refs, attrs

    def _restore_workspace(self, refs: dict[str, str]) -> None:
        """Load the workspace's items and objects into moto; later writes go through to it."""
        from moto.dynamodb.models import dynamodb_backends
        from moto.s3.models import s3_backends

        assert self.workspace is not None
        self._persisted_buckets = {refs[name] for name in self.template.of_type("AWS::S3::Bucket")}
        backend = dynamodb_backends[ACCOUNT][REGION]
        self.workspace.restore_tables(backend, list(self.template.of_type("AWS::DynamoDB::Table")))
        for bucket in self._persisted_buckets:
            self.workspace.restore_bucket(s3_backends[ACCOUNT]["global"], bucket)

    def _create_functions(self, resolver: Resolver) -> None:
        code = _dummy_zip()
        for fn in self.template.functions():
            self.handlers[fn.logical_id] = _load_handler(self.template.root / fn.code_uri, fn.handler)
            arn = self.lambda_.create_function(
                FunctionName=fn.logical_id,
                Runtime="python3.12",
                Role=self.role_arn,
                Handler=fn.handler,
                Code={"ZipFile": code},
                Timeout=900,
            )["FunctionArn"]
            for event in fn.events.values():
                props = resolver(event.get("Properties", {}))
                if event["Type"] == "SNS":
                    self.sns.subscribe(TopicArn=props["Topic"], Protocol="lambda", Endpoint=arn)
                elif event["Type"] == "EventBridgeRule":
                    rule = f"{fn.logical_id}-rule"
                    self.events.put_rule(Name=rule, EventPattern=json.dumps(props["Pattern"]))
                    self.events.put_targets(Rule=rule, Targets=[{"Id": fn.logical_id, "Arn": arn}])
                else:
                    raise ValueError(
                        f"event type {event['Type']} of {fn.logical_id} is not supported locally"
                    )

    def _create_endpoints(self, refs: dict[str, str]) -> None:
        bucket = refs["DataBucket"]
        for name, factory in self.endpoint_factories.items():
            self.sagemaker.create_model(
                ModelName=name,
                ExecutionRoleArn=self.role_arn,
                PrimaryContainer={"Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/autolabel:local"},
            )
            self.sagemaker.create_endpoint_config(
                EndpointConfigName=name,
                ProductionVariants=[
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": name,
                        "InstanceType": "ml.g4dn.xlarge",
                        "InitialInstanceCount": 1,
                    }
                ],
                AsyncInferenceConfig={
                    "ClientConfig": {"MaxConcurrentInvocationsPerInstance": self.max_concurrent_invocations},
                    "OutputConfig": {
                        "S3OutputPath": f"s3://{bucket}/async/{name}/output/",
                        "S3FailurePath": f"s3://{bucket}/async/{name}/failure/",
                        "NotificationConfig": {
                            "SuccessTopic": refs["InferenceSuccessTopic"],
                            "ErrorTopic": refs["InferenceErrorTopic"],
                        },
                    },
                },
            )
            self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
            endpoint = self.endpoints[name] = LocalAsyncEndpoint.from_sagemaker(
                name, self.sagemaker, self.s3, self.sns, factory, read_object=self._read_object
            )
            # The model loads while the rest starts and the frames upload, not in the first batch.
            threading.Thread(target=endpoint.warm, name=f"{name}-warm", daemon=True).start()

    def _read_object(self, bucket: str, key: str) -> bytes:
        """An object of local S3 as the service reads it for another service (an endpoint reading
        its batch's frames): the stored bytes, or the ClientError a GetObject gets (NoSuchBucket,
        NoSuchKey). About a tenth of a GetObject's CPU through the client, with no request to sign,
        route and parse: a local run reads every frame this way once."""
        backend = s3_backends[ACCOUNT][PARTITION]
        try:
            found = backend.get_object(bucket, key)
        except MissingBucket as exc:
            raise _s3_error("NoSuchBucket", "The specified bucket does not exist", BucketName=bucket) from exc
        if not isinstance(found, FakeKey):
            raise _s3_error("NoSuchKey", "The specified key does not exist.", Key=key)
        return bytes(found.value)

    def _create_state_machine(self, resolver: Resolver) -> str:
        path, substitutions = self.template.state_machine()
        definition = path.read_text(encoding="utf-8")
        for key, value in substitutions.items():
            definition = definition.replace("${" + key + "}", str(resolver(value)))
        return str(
            self.sfn.create_state_machine(
                name="AutolabelStateMachine", definition=definition, roleArn=self.role_arn
            )["stateMachineArn"]
        )

    # --- bindings moto cannot provide ------------------------------------------------------------
    def _patch_moto(self) -> None:
        cloud = self

        def invoke_lambda(fn: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            return cloud._invoke(fn.function_name, event)

        def invoke_endpoint_async(resp: SageMakerRuntimeResponse) -> Any:
            name = resp.path.split("/")[2]
            try:
                kwargs = request_params(name, resp.headers, b"")
            except ApiError as err:
                raise JsonRESTError(err.code, err.message) from err
            endpoint = cloud.endpoints.get(name)
            if endpoint is None:
                raise JsonRESTError("ValidationError", f"Endpoint {name} of account {ACCOUNT} not found.")
            try:
                answer = endpoint.invoke_endpoint_async(**kwargs)
            except ClientError as err:
                raise JsonRESTError(err.response["Error"]["Code"], err.response["Error"]["Message"]) from err
            headers = {"X-Amzn-SageMaker-OutputLocation": answer["OutputLocation"]}
            if answer.get("FailureLocation"):
                headers["X-Amzn-SageMaker-FailureLocation"] = answer["FailureLocation"]
            return 202, headers, json.dumps({"InferenceId": answer["InferenceId"]})

        def labeling_call(operation: str) -> Callable[[SageMakerResponse], str]:
            def call(resp: SageMakerResponse) -> str:
                assert cloud.labeling is not None
                params = json.loads(resp.body)
                try:
                    result = getattr(cloud.labeling, operation)(**params)
                except ClientError as err:
                    raise JsonRESTError(
                        err.response["Error"]["Code"], err.response["Error"]["Message"]
                    ) from err
                return json.dumps(result, default=_json_default)

            return call

        def send_task_failure(resp: StepFunctionResponse) -> Any:
            # moto 5.2.5 drops SendTaskFailure's cause; AWS hands it to the task's Catch as $.Cause.
            resp.stepfunction_backend.send_task_failure(
                resp._get_param("taskToken"), error=resp._get_param("error"), cause=resp._get_param("cause")
            )
            return "{}"

        dynamodb_lock = threading.RLock()
        handle_dynamodb = DynamoHandler.call_action

        def serialised_dynamodb(resp: DynamoHandler) -> Any:
            # DynamoDB applies each request atomically (a condition and its write, a transaction);
            # moto 5.2.5 does not, and local mode calls it from many threads at once.
            with dynamodb_lock:
                if cloud.workspace is None:
                    return handle_dynamodb(resp)
                action = str(resp.headers.get("X-Amz-Target", "")).rsplit(".", 1)[-1]
                body = json.loads(resp.body or "{}") if isinstance(resp.body, (str, bytes)) else {}
                with cloud.workspace.dynamodb_request(action, body, resp.dynamodb_backend):
                    return handle_dynamodb(resp)

        # moto 5.2.5 parses each UpdateItem's expression twice (to validate the request, then to
        # apply it), about a tenth of a ledger write's CPU here. The parse depends only on the
        # expression's text, and moto never changes the tree it returns (its validator works on a
        # deep copy), so each text is parsed once; a malformed one still raises every time.
        parse_update = UpdateExpressionParser.make.__func__
        parsed_updates: dict[str, Any] = {}

        def make_update_expression(parser: type, expression: str) -> Any:
            tree = parsed_updates.get(expression)
            if tree is None:
                tree = parse_update(parser, expression)
                if len(parsed_updates) < 1024:
                    parsed_updates[expression] = tree
            return tree

        # moto 5.2.5 parses a request's ConditionExpression twice (to check the names and values it
        # uses, then to apply it) and again in every request; a ledger write's condition is one of a
        # few texts, and parsing is about a fifth of the write's CPU here. The tree depends only on
        # the expression, its names and its values, and evaluating it changes nothing in it (every
        # DynamoDB request runs under the lock above, so no two use one tree at once); what the
        # parse found is handed to the parser as a parse would. A malformed one still raises each time.
        parse_condition = ConditionExpressionParser.parse
        parsed_conditions: dict[tuple[str, str, str], tuple[Any, list[str], list[str]]] = {}

        def cached_condition(parser: ConditionExpressionParser) -> Any:
            if not parser.condition_expression:
                return parse_condition(parser)
            key = (
                parser.condition_expression,
                json.dumps(parser.expression_attribute_names or {}, sort_keys=True),
                json.dumps(parser.expression_attribute_values or {}, sort_keys=True, default=str),
            )
            hit = parsed_conditions.get(key)
            if hit is None:
                tree = parse_condition(parser)
                if len(parsed_conditions) < 1024:
                    found = (list(parser.expr_attr_names_found), list(parser.expr_attr_values_found))
                    parsed_conditions[key] = (tree, *found)
                return tree
            tree, names, values = hit
            parser.expr_attr_names_found = list(names)
            parser.expr_attr_values_found = list(values)
            return tree

        # moto lists a response class's methods (inspect.getmembers) in every request to find the
        # action's; the classes do not change while this cloud runs (its own methods are patched in
        # before the first request), so each is listed once.
        listed_methods: dict[type, list[str]] = {}

        def method_names(clazz: type) -> list[str]:
            names = listed_methods.get(clazz)
            if names is None:
                names = listed_methods[clazz] = method_names_from_class(clazz)
            return names

        # moto 5.2.5 backs up every table a transaction touches with a deep copy, once per item
        # (about 15 ms an item against a ledger of a few thousand frames: a 100-item transaction
        # took longer than 100 single writes). Here each item the transaction names is copied
        # instead, and put back if the transaction fails; moto's own rollback then restores the
        # same table objects (its copy of a Table is the table itself). Every DynamoDB request runs
        # under the lock above, so nothing sees the items in between.
        transact = DynamoDBBackend.transact_write_items

        class _TablesNotCopied:
            @staticmethod
            def deepcopy(value: Any, memo: Any = None) -> Any:
                return value if isinstance(value, MotoTable) else copy.deepcopy(value, memo)

        def transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
            saved: list[tuple[MotoTable, Any, Any, Any]] = []
            for entry in transact_items:
                for op in entry.values() if isinstance(entry, dict) else ():
                    table = backend.tables.get(str(op.get("TableName", "")))
                    source = op.get("Key") or op.get("Item") or {}
                    if table is None or table.hash_key_attr not in source:
                        continue  # moto refuses the request: nothing to put back
                    hash_key = DynamoType(source[table.hash_key_attr])
                    range_key = (
                        DynamoType(source[table.range_key_attr])
                        if table.range_key_attr and table.range_key_attr in source
                        else None
                    )
                    if table.range_key_attr and range_key is None:
                        continue
                    current = table.items.get(hash_key)
                    if range_key is not None and current is not None:
                        current = current.get(range_key)
                    saved.append((table, hash_key, range_key, copy.deepcopy(current)))
            try:
                transact(backend, transact_items)
            except BaseException:
                for table, hash_key, range_key, item in reversed(saved):
                    if range_key is None:
                        if item is None:
                            table.items.pop(hash_key, None)
                        else:
                            table.items[hash_key] = item
                    elif item is None:
                        table.items.get(hash_key, {}).pop(range_key, None)
                    else:
                        table.items.setdefault(hash_key, {})[range_key] = item
                raise

        # moto rebuilds a backend's URL table in every request to find the handler (and S3's
        # reloads its urls module to do it, twice): about a quarter of a GetObject's CPU here. The
        # table depends on the backend's class and on environment variables (custom S3 endpoints,
        # ISO regions) that nothing changes while this cloud runs; each class's is built once.
        build_urls = BaseBackend.urls.fget
        url_tables: dict[type, dict[str, Any]] = {}

        def urls(backend: BaseBackend) -> dict[str, Any]:
            table = url_tables.get(type(backend))
            if table is None:
                table = url_tables[type(backend)] = build_urls(backend)
            return table

        original_put_object = S3Backend.put_object
        original_delete_object = S3Backend.delete_object

        def put_object(backend: S3Backend, bucket_name: str, key_name: str, value: bytes, **kw: Any) -> Any:
            key = original_put_object(backend, bucket_name, key_name, value, **kw)
            if cloud.workspace is not None and bucket_name in cloud._persisted_buckets:
                cloud.workspace.put_object(bucket_name, key_name, bytes(value))
            for listener in list(cloud.object_listeners):
                listener(bucket_name, key_name, value)
            return key

        def delete_object(backend: S3Backend, bucket_name: str, key_name: str, *a: Any, **kw: Any) -> Any:
            result = original_delete_object(backend, bucket_name, key_name, *a, **kw)
            if cloud.workspace is not None and bucket_name in cloud._persisted_buckets:
                cloud.workspace.delete_object(bucket_name, key_name)
            return result

        def list_objects_v2_items(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
            # moto 5.2.5's listObjectsV2 ItemReader yields only the first page (1,000 keys) and fails on
            # an empty prefix; Step Functions pages through every object and yields none for an empty one.
            client = ResourceEvalS3._get_s3_client(resource_runtime_part, state_credentials)
            params = dict(env.stack.pop())
            items: list[Any] = []
            for page in client.get_paginator("list_objects_v2").paginate(**params):
                items.extend(page.get("Contents", []))
            env.stack.append(items)

        map_clients: dict[str, Any] = {}
        map_clients_lock = threading.Lock()

        def map_s3_client(resource_runtime_part: Any, state_credentials: Any) -> Any:
            # The Distributed Maps' ItemReader and ResultWriter: Step Functions reads and writes S3
            # itself and rides out throttling (503 SlowDown) before it reports ItemReaderFailed or
            # ResultWriterFailed; moto's client for them makes one attempt only. One client per
            # region for the cloud's life (clients are thread-safe; making one costs ~20 ms of CPU,
            # and every Map run reads and writes).
            region = resource_runtime_part.region
            with map_clients_lock:
                if region not in map_clients:
                    map_clients[region] = boto3.client(
                        "s3",
                        region_name=region,
                        aws_access_key_id="ak",
                        aws_secret_access_key="sk",
                        config=Config(retries={"mode": "standard", "max_attempts": 5}),
                    )
                return map_clients[region]

        ended = BaseExecutionWorkerCommunication.terminated

        def terminated(comm: BaseExecutionWorkerCommunication) -> None:
            try:
                ended(comm)
            finally:
                cloud._ended.set()

        original_send = Rule.send_to_targets

        def send_to_targets(rule: Rule, event: Any, transform_input: bool = True) -> None:
            lambdas = [t for t in rule.targets if ":lambda:" in t["Arn"]]
            if lambdas and rule.event_pattern.matches_event(event):
                for target in lambdas:
                    name = target["Arn"].rsplit(":", 1)[-1]
                    # EventBridge invokes Lambda asynchronously.
                    thread = threading.Thread(target=cloud._invoke, args=(name, dict(event)), daemon=True)
                    cloud._event_threads.append(thread)
                    thread.start()
            others = [t for t in rule.targets if ":lambda:" not in t["Arn"]]
            if others:
                saved = rule.targets
                rule.targets = others
                try:
                    original_send(rule, event, transform_input)
                finally:
                    rule.targets = saved

        # moto parses the ASL when the state machine is created (to validate it) and again when each
        # execution starts (about 1.3 s each here). The tree parsed to validate is handed to the
        # first execution of that definition instead of parsing it again; later executions parse
        # their own (an execution never shares a tree with another).
        validated: dict[str, Any] = {}
        validating = threading.local()
        original_parse = AmazonStateLanguageParser.parse
        original_validate = StepFunctionsParserBackend._validate_definition

        def parse(definition: str) -> Any:
            spare = validated.pop(definition, None)
            if spare is not None and not getattr(validating, "on", False):
                return spare
            result = original_parse(definition)
            if getattr(validating, "on", False):
                validated[definition] = result
            return result

        def validate_definition(definition: str) -> Any:
            validating.on = True
            try:
                return original_validate(definition)
            finally:
                validating.on = False

        self._patches = [
            mock.patch.object(
                moto_utils, "service_name_from_moto_package_name", _service_name_from_moto_package
            ),
            mock.patch.object(AmazonStateLanguageParser, "parse", staticmethod(parse)),
            mock.patch.object(
                StepFunctionsParserBackend, "_validate_definition", staticmethod(validate_definition)
            ),
            mock.patch.object(LambdaFunction, "_invoke_lambda", invoke_lambda),
            mock.patch.object(SageMakerRuntimeResponse, "invoke_endpoint_async", invoke_endpoint_async),
            mock.patch.object(
                SageMakerResponse, "create_labeling_job", labeling_call("create_labeling_job"), create=True
            ),
            mock.patch.object(
                SageMakerResponse,
                "describe_labeling_job",
                labeling_call("describe_labeling_job"),
                create=True,
            ),
            mock.patch.object(Rule, "send_to_targets", send_to_targets),
            mock.patch.object(BaseExecutionWorkerCommunication, "terminated", terminated),
            mock.patch.object(StepFunctionResponse, "send_task_failure", send_task_failure),
            mock.patch.object(DynamoHandler, "call_action", serialised_dynamodb),
            mock.patch.object(UpdateExpressionParser, "make", classmethod(make_update_expression)),
            mock.patch.object(ConditionExpressionParser, "parse", cached_condition),
            mock.patch.object(moto_responses, "method_names_from_class", method_names),
            mock.patch.object(BaseBackend, "urls", property(urls)),
            mock.patch.object(dynamodb_models, "copy", _TablesNotCopied),
            mock.patch.object(DynamoDBBackend, "transact_write_items", transact_write_items),
            mock.patch.object(S3Backend, "put_object", put_object),
            mock.patch.object(S3Backend, "delete_object", delete_object),
            mock.patch.object(ResourceEvalS3, "_handle_list_objects_v2", staticmethod(list_objects_v2_items)),
            mock.patch.object(ResourceEvalS3, "_get_s3_client", staticmethod(map_s3_client)),
            mock.patch.object(result_writer_s3.ResourceEvalS3, "_get_s3_client", staticmethod(map_s3_client)),
        ]
        for patcher in self._patches:
            patcher.start()

    def _invoke(self, function_name: str, event: Any) -> tuple[str, bool, str]:
        """Run a bound handler as Lambda would: JSON in, JSON out, errors as Lambda's error payload."""
        handler = self.handlers[function_name]
        payload = json.loads(event) if isinstance(event, (str, bytes)) else (event or {})
        with self._lock:
            self.invocations[function_name] = self.invocations.get(function_name, 0) + 1
        try:
            result = handler(payload, LocalContext(function_name))
            return json.dumps(result), False, ""
        except Exception as exc:  # noqa: BLE001 - Lambda reports every error this way
            error = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_exception(exc)[-5:],
            }
            return json.dumps(error), True, ""

    # --- running the workflow --------------------------------------------------------------------
    def start_run(self, request: dict[str, Any], name: str | None = None) -> str:
        return str(
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=name or f"run-{uuid.uuid4().hex[:12]}",
                input=json.dumps(request),
            )["executionArn"]
        )

    def wait(
        self,
        execution_arn: str,
        timeout: float = 600,
        poll: float = 0.2,
        on_poll: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Wait for an execution to end; returns describe_execution's answer. Woken as soon as an
        execution ends (else every ``poll`` seconds, when ``on_poll`` is called)."""
        deadline = time.monotonic() + timeout
        while True:
            self._ended.clear()
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                if described["status"] != "SUCCEEDED":
                    self.emit_status_change(described)
                return dict(described)
            if on_poll:
                on_poll()
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still running after {timeout}s")
            self._ended.wait(poll)

    def emit_status_change(self, described: dict[str, Any]) -> None:
        """Put the "Execution Status Change" event Step Functions emits when an execution ends (moto
        emits none) on the default bus, and wait for the rules' Lambda targets to handle it."""
        detail = {
            "executionArn": described["executionArn"],
            "stateMachineArn": described["stateMachineArn"],
            "name": described["name"],
            "status": described["status"],
            "input": described.get("input"),
            "error": described.get("error"),
            "cause": described.get("cause"),
            "redriveCount": 0,
        }
        self._event_threads.clear()
        self.events.put_events(
            Entries=[
                {
                    "Source": "aws.states",
                    "DetailType": "Step Functions Execution Status Change",
                    "Detail": json.dumps(detail),
                    "Resources": [described["executionArn"]],
                }
            ]
        )
        for thread in list(self._event_threads):
            thread.join(timeout=120)

    def state_transitions(self, execution_arn: str) -> int:
        """State transitions of an execution (what Standard workflows are billed for)."""
        events = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = self.sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        return sum(1 for e in events if e["type"].endswith("StateEntered"))


def _s3_error(code: str, message: str, **fields: str) -> ClientError:
    """The error a GetObject through the client raises (its fields as S3's error body gives them)."""
    return ClientError(
        {
            "Error": {"Code": code, "Message": message, **fields},
            "ResponseMetadata": {"HTTPStatusCode": 404},
        },
        "GetObject",
    )


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.timestamp()
    raise TypeError(f"{type(value)} is not JSON serialisable")
