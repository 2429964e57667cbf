"""ListPage, InvokeModels and StartReview against in-memory fakes of their ports (no moto).

The steps receive small Protocol ports (``workflow.steps.ports``); the fakes in ``port_fakes``
answer as the adapters do, typed errors included, so these tests exercise the steps' own rules.
"""

from __future__ import annotations

import pytest
from port_fakes import (
    MemoryLabelingJobs,
    MemoryLedger,
    MemoryObjects,
    MemoryTokens,
    RecordingCallbacks,
    RecordingEndpoints,
)

from workflow.adapters.labeling import job_name
from workflow.domain.errors import ConfigurationError, EndpointThrottled
from workflow.domain.frames import inference_id
from workflow.domain.notifications import LabelingJobStateChange
from workflow.domain.records import BatchItem, batch_id
from workflow.domain.run import (
    ListCursor,
    ManifestPart,
    ManifestResult,
    ModelEndpoint,
    RunContext,
    RunRequest,
    SourceItem,
)
from workflow.settings import Settings
from workflow.steps.inference import invoke_models
from workflow.steps.listing import list_page
from workflow.steps.prepare import prepare_run
from workflow.steps.review import on_labeling_job_change, start_labeling_job, start_review

DATA, LOGS = "autolabel-data", "drive-logs"
SETTINGS = Settings(
    data_bucket=DATA,
    token_table="TokenTable",
    ledger_table="LedgerTable",
    default_models=[ModelEndpoint(name="m", endpoint_name="ep-m")],
    workteam_arn="arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/reviewers",
    labeling_role_arn="arn:aws:iam::123456789012:role/labeling",
)
TOKEN = "token-1"


def run_of(
    objects: MemoryObjects, ledger: MemoryLedger, name: str = "run-1", **request: object
) -> RunContext:
    return prepare_run(
        RunRequest.model_validate({"sources": [f"s3://{LOGS}/a/"], **request}),
        name,
        SETTINGS,
        objects,
        ledger,
    )


def frames(objects: MemoryObjects, *names: str) -> None:
    for n in names:
        objects.put_bytes(f"s3://{LOGS}/a/{n}", b"x", "image/jpeg")


# --- PrepareRun ------------------------------------------------------------------------------------
def test_a_run_naming_an_endpoint_the_stack_may_not_invoke_is_refused_up_front() -> None:
    # Given a deployment whose InvokeModels may call ep-m and ep-lanes only
    settings = SETTINGS.model_copy(update={"invokable_endpoints": ("ep-m", "EP-Lanes")})
    objects, ledger = MemoryObjects(), MemoryLedger()
    request = {"sources": [f"s3://{LOGS}/a/"]}

    def prepare(models: list[dict[str, str]]) -> RunContext:
        return prepare_run(
            RunRequest.model_validate({**request, "models": models}), "r", settings, objects, ledger
        )

    # When a run names those (in any case), it is prepared
    assert [m.endpoint_name for m in prepare([{"name": "m", "endpoint_name": "ep-lanes"}]).models] == [
        "ep-lanes"
    ]
    # But a run naming another endpoint is refused before anything is listed, with the fix
    with pytest.raises(ConfigurationError, match=r"'ep-other'.*ep-lanes, ep-m.*ProfileEndpointNames"):
        prepare([{"name": "m", "endpoint_name": "ep-m"}, {"name": "m", "endpoint_name": "ep-other"}])


def test_the_invokable_endpoints_come_from_the_environment() -> None:
    env = {"DATA_BUCKET": "d", "TOKEN_TABLE": "t", "LEDGER_TABLE": "l"}
    assert Settings.from_env(env | {"INVOKABLE_ENDPOINTS": "ep-m,"}).invokable_endpoints == ("ep-m",)
    assert Settings.from_env(env).invokable_endpoints == ()  # unset: not checked


# --- ListPage ---------------------------------------------------------------------------------------
def test_list_page_claims_screens_and_batches_a_page() -> None:
    # Given three frames, a text file and a frame another run holds
    objects, ledger = MemoryObjects(), MemoryLedger()
    frames(objects, "f1.jpg", "f2.png", "f3.jpeg", "notes.txt", "held.jpg")
    ledger.holders[f"s3://{LOGS}/a/held.jpg"] = "run-0"
    run = run_of(objects, ledger, batch_size=2)
    assert ledger.runs == {"run-1": "running"}
    # When ListPage lists the source's first page
    cursor = list_page(
        run, SourceItem(index=0, uri=f"s3://{LOGS}/a/"), ListCursor(), SETTINGS, objects, ledger
    )
    # Then the three frames are claimed and cut into batches of two, and the rest is skipped with a reason
    assert cursor == ListCursor(page=1, token=None, more=False)
    first = BatchItem.model_validate(
        objects.get_json(f"s3://{DATA}/{run.run_prefix}/batches/{batch_id(0, 0, 0)}.json")
    )
    second = BatchItem.model_validate(
        objects.get_json(f"s3://{DATA}/{run.run_prefix}/batches/{batch_id(0, 0, 1)}.json")
    )
    assert first.frames == [f"s3://{LOGS}/a/f1.jpg", f"s3://{LOGS}/a/f2.png"]
    assert second.frames == [f"s3://{LOGS}/a/f3.jpeg"]
    skipped = objects.get_json(f"s3://{DATA}/{run.run_prefix}/skipped/0000-000000.json")
    reasons = {s["frame"].rsplit("/", 1)[-1]: s["reason"] for s in skipped}
    assert reasons == {
        "notes.txt": "not a frame: only .jpg, .jpeg, .png are labeled",
        "held.jpg": "already labeled by run run-0",
    }


def test_a_source_that_cannot_be_listed_is_skipped_with_the_service_code() -> None:
    # Given a source whose bucket refuses the listing (the adapter raises SourceUnreadable)
    objects, ledger = MemoryObjects(unlistable={f"s3://{LOGS}/a/": "AccessDenied"}), MemoryLedger()
    run = run_of(objects, ledger)
    # When ListPage lists it
    cursor = list_page(
        run, SourceItem(index=0, uri=f"s3://{LOGS}/a/"), ListCursor(), SETTINGS, objects, ledger
    )
    # Then the source ends, no batch is written, and the page says why
    assert cursor.more is False
    assert not [k for k in objects.objects if "/batches/" in k]
    (skip,) = objects.get_json(f"s3://{DATA}/{run.run_prefix}/skipped/0000-000000.json")
    assert skip == {"frame": f"s3://{LOGS}/a/", "reason": "cannot list source: AccessDenied"}


# --- InvokeModels -----------------------------------------------------------------------------------
def listed_run(objects: MemoryObjects, ledger: MemoryLedger, **request: object) -> tuple[RunContext, str]:
    frames(objects, "f1.jpg", "f2.png")
    run = run_of(objects, ledger, **request)
    list_page(run, SourceItem(index=0, uri=f"s3://{LOGS}/a/"), ListCursor(), SETTINGS, objects, ledger)
    return run, f"{run.batches_prefix}{batch_id(0, 0, 0)}.json"


def test_invoke_models_parks_the_token_then_sends_one_request_per_batch_or_per_frame() -> None:
    # Given a batch of two frames and two models: one takes the batch's request file, one one image a request
    objects, ledger = MemoryObjects(), MemoryLedger()
    models = [
        {"name": "m", "endpoint_name": "ep-m"},
        {"name": "js", "endpoint_name": "ep-js", "response_format": "jumpstart", "batch_requests": False},
    ]
    run, key = listed_run(objects, ledger, models=models)
    tokens, endpoints, callbacks = MemoryTokens(), RecordingEndpoints(), RecordingCallbacks()
    # When InvokeModels runs
    result = invoke_models(TOKEN, key, run, objects, tokens, endpoints, callbacks)
    # Then the token waits with three pending inferences, and three requests went out
    assert result == {"batch_key": f"batch#run-1#{batch_id(0, 0, 0)}", "inferences": 3}
    token, pending = tokens.batches[result["batch_key"]]
    assert token == TOKEN and [p.model for p in pending] == ["m", "js", "js"]
    batch_request, *images = endpoints.requests
    # (our container is told the lowest score the profile keeps from the model: 0.25 by default)
    assert batch_request["EndpointName"] == "ep-m"
    assert batch_request["ContentType"] == "application/json; min-score=0.25"
    assert objects.get_json(batch_request["InputLocation"]) == [
        f"s3://{LOGS}/a/f1.jpg",
        f"s3://{LOGS}/a/f2.png",
    ]
    assert [(r["InputLocation"], r["ContentType"], r["Accept"]) for r in images] == [
        (f"s3://{LOGS}/a/f1.jpg", "application/x-image", "application/json;verbose"),
        (f"s3://{LOGS}/a/f2.png", "application/x-image", "application/json;verbose"),
    ]
    assert images[0]["InferenceId"] == inference_id("run-1", batch_id(0, 0, 0), "js", f"s3://{LOGS}/a/f1.jpg")
    assert callbacks.succeeded == [] and callbacks.failed == []


def test_a_throttled_endpoint_raises_the_error_the_state_machine_retries() -> None:
    objects, ledger = MemoryObjects(), MemoryLedger()
    run, key = listed_run(objects, ledger)
    with pytest.raises(EndpointThrottled):
        invoke_models(
            TOKEN,
            key,
            run,
            objects,
            MemoryTokens(),
            RecordingEndpoints(throttle_after=0),
            RecordingCallbacks(),
        )


def test_a_batch_already_done_resumes_at_once_without_inference() -> None:
    # Given a batch whose counts an earlier attempt wrote
    objects, ledger = MemoryObjects(), MemoryLedger()
    run, key = listed_run(objects, ledger)
    counts = {"batch_id": batch_id(0, 0, 0), "frames": 2, "labeled": 2, "failed": 0}
    objects.put_json(f"s3://{DATA}/{run.run_prefix}/counts/{batch_id(0, 0, 0)}.json", counts)
    endpoints, callbacks = RecordingEndpoints(), RecordingCallbacks()
    # When InvokeModels runs, Then nothing is sent to the endpoint and the task resumes with done
    result = invoke_models(TOKEN, key, run, objects, MemoryTokens(), endpoints, callbacks)
    assert result["done"] is True and endpoints.requests == []
    ((token, output),) = callbacks.succeeded
    assert token == TOKEN and output["done"] is True


# --- StartReview (Ground Truth) ---------------------------------------------------------------------
def manifest() -> ManifestResult:
    review = f"s3://{DATA}/runs/run-1/review"
    return ManifestResult(
        parts=[ManifestPart(index=0, manifest_uri=f"{review}/input-000.manifest", frames=2)],
        frames_to_review=2,
        label_categories_uri=f"{review}/label-categories.json",
        ui_template_uri=f"{review}/worker-template.liquid.html",
        prelabel_attribute="prelabel",
        categories=["car"],
    )


def test_start_review_parks_the_token_by_job_name_and_a_retry_finds_the_job() -> None:
    objects, ledger = MemoryObjects(), MemoryLedger()
    run = run_of(objects, ledger, review="groundtruth")
    tokens, jobs = MemoryTokens(), MemoryLabelingJobs()
    part = manifest().parts[0]
    # When StartReview runs, then again (the Lambda was retried after creating the job)
    first = start_review(
        TOKEN,
        part,
        run,
        manifest(),
        SETTINGS,
        tokens,
        objects,
        lambda: jobs,
        lambda: pytest.fail("no Label Studio"),
    )
    again = start_labeling_job(TOKEN, part, run, manifest(), SETTINGS, tokens, jobs)
    # Then one job exists, both answers name it, and the token waits under its name
    name = job_name("run-1", 0)
    assert first == {"backend": "groundtruth", "job_name": name, "job_arn": jobs.jobs[name]["LabelingJobArn"]}
    assert again == {"job_name": name, "job_arn": first["job_arn"]}
    assert jobs.creates == 2 and list(jobs.jobs) == [name] and tokens.jobs == {name: TOKEN}
    assert jobs.jobs[name]["HumanTaskConfig"]["WorkteamArn"] == SETTINGS.workteam_arn


@pytest.mark.parametrize("status", ["Completed", "Failed", "InProgress"])
def test_the_job_state_change_resumes_fails_or_ignores(status: str) -> None:
    name = "run-1-p000"
    tokens, callbacks = MemoryTokens(jobs={name: TOKEN}), RecordingCallbacks()
    jobs = MemoryLabelingJobs(
        jobs={
            name: {
                "LabelAttributeName": "reviewed",
                "LabelingJobOutput": {"OutputDatasetS3Uri": f"s3://{DATA}/out/output.manifest"},
                "FailureReason": "manifest unreadable",
            }
        }
    )
    change = LabelingJobStateChange(
        status=status, job_arn=f"arn:aws:sagemaker:us-east-1:1:labeling-job/{name}"
    )
    outcome = on_labeling_job_change(change, SETTINGS, tokens, callbacks, jobs)
    if status == "Completed":
        assert outcome == "resumed"
        ((_, output),) = callbacks.succeeded
        assert output["output_manifest_uri"] == f"s3://{DATA}/out/output.manifest"
    elif status == "Failed":
        assert outcome == "failed"
        assert callbacks.failed == [(TOKEN, "LabelingJobFailed", f"{name}: manifest unreadable")]
    else:
        assert outcome == "ignored" and tokens.jobs == {name: TOKEN}
    # A redelivered event finds the token gone and changes nothing
    if status != "InProgress":
        assert on_labeling_job_change(change, SETTINGS, tokens, callbacks, jobs) == "unknown-or-done"


@pytest.mark.parametrize("ended", ["Completed", "Stopped", "InProgress"])
def test_a_resumed_run_whose_job_ended_already_resumes_its_token_at_once(ended: str) -> None:
    # Given the labeling job of an earlier execution of the same run, ended (its event long gone)
    objects, ledger = MemoryObjects(), MemoryLedger()
    run = run_of(objects, ledger, review="groundtruth")
    tokens, jobs, callbacks = MemoryTokens(), MemoryLabelingJobs(), RecordingCallbacks()
    part = manifest().parts[0]
    start_labeling_job("earlier-token", part, run, manifest(), SETTINGS, tokens, jobs, callbacks)
    name = job_name("run-1", 0)
    jobs.jobs[name].update(LabelingJobStatus=ended, FailureReason="stopped by a person")
    tokens.claim_job(name)  # the earlier execution's callback took its token
    # When the resumed execution's StartReview meets that job
    start_labeling_job(TOKEN, part, run, manifest(), SETTINGS, tokens, jobs, callbacks)
    # Then its token is resumed with the job's end right away (a job still running is waited for)
    if ended == "Completed":
        assert [t for t, _ in callbacks.succeeded] == [TOKEN] and not tokens.jobs
    elif ended == "Stopped":
        assert callbacks.failed == [(TOKEN, "LabelingJobStopped", f"{name}: stopped by a person")]
    else:
        assert not callbacks.succeeded and not callbacks.failed and tokens.jobs == {name: TOKEN}
