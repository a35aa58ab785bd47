"""Push webhooks: signatures and tokens checked, payloads shaped like the senders' own."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

import pytest

from nebula.daemon.webhook import PushEvent, WebhookError, verify_and_parse

SECRET = "hook-s3cret-Ph7x"
AFTER = "bffeb74224043ba2feb48d137756c8a9331c449a"
BEFORE = "28e1879d029cb852e4844d9c718537df08844e03"


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_push(ref: str = "refs/heads/main", after: str = AFTER) -> dict[str, Any]:
    return {
        "ref": ref,
        "before": BEFORE,
        "after": after,
        "created": False,
        "deleted": after == "0" * 40,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/ada/homelab/compare/{BEFORE[:12]}...{after[:12]}",
        "commits": [
            {
                "id": after,
                "message": "Add jellyfin",
                "timestamp": "2024-05-01T10:00:00+02:00",
                "author": {"name": "Ada Lovelace", "email": "ada@example.org", "username": "ada"},
                "added": ["packages/jellyfin.yaml"],
                "removed": [],
                "modified": [],
            }
        ],
        "head_commit": {"id": after, "message": "Add jellyfin"},
        "repository": {"id": 1, "name": "homelab", "full_name": "ada/homelab"},
        "pusher": {"name": "ada", "email": "ada@example.org"},
        "sender": {"login": "ada", "id": 7, "type": "User"},
    }


def gitea_push(ref: str = "refs/heads/main") -> dict[str, Any]:
    return {
        "ref": ref,
        "before": BEFORE,
        "after": AFTER,
        "compare_url": f"http://gitea.lan:3000/ada/homelab/compare/{BEFORE}...{AFTER}",
        "commits": [
            {
                "id": AFTER,
                "message": "Add jellyfin\n",
                "author": {"name": "Ada", "email": "ada@example.org", "username": "ada"},
                "committer": {"name": "Ada", "email": "ada@example.org", "username": "ada"},
                "timestamp": "2024-05-01T10:00:00+02:00",
            }
        ],
        "repository": {"id": 140, "name": "homelab", "full_name": "ada/homelab"},
        "pusher": {"id": 1, "login": "ada", "full_name": "Ada Lovelace", "username": "ada"},
        "sender": {"id": 1, "login": "ada", "full_name": "Ada Lovelace", "username": "ada"},
    }


def gitlab_push(ref: str = "refs/heads/main", kind: str = "push") -> dict[str, Any]:
    return {
        "object_kind": kind,
        "event_name": kind,
        "before": BEFORE,
        "after": AFTER,
        "ref": ref,
        "checkout_sha": AFTER,
        "user_id": 4,
        "user_name": "Ada Lovelace",
        "user_username": "ada",
        "user_email": "ada@example.org",
        "project_id": 15,
        "project": {"id": 15, "name": "homelab", "path_with_namespace": "ada/homelab"},
        "commits": [{"id": AFTER, "message": "Add jellyfin\n", "added": [], "modified": []}],
        "total_commits_count": 1,
        "repository": {"name": "homelab", "url": "git@gitlab.lan:ada/homelab.git"},
    }


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, indent=2).encode()


def github_headers(body: bytes, event: str = "push") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/abc123",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-GitHub-Event": event,
        "X-GitHub-Hook-ID": "292430182",
        "X-Hub-Signature-256": f"sha256={sign(body)}",
    }


def gitea_headers(body: bytes) -> dict[str, str]:
    """Gitea sends its own headers, and GitHub's and Gogs' too."""
    return {
        "Content-Type": "application/json",
        "X-GitHub-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
        "X-GitHub-Event": "push",
        "X-Gogs-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
        "X-Gogs-Event": "push",
        "X-Gitea-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
        "X-Gitea-Event": "push",
        "X-Gitea-Signature": sign(body),
        "X-Gogs-Signature": sign(body),
        "X-Hub-Signature-256": f"sha256={sign(body)}",
    }


def gitlab_headers(token: str = SECRET, event: str = "Push Hook") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.0.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Instance": "https://gitlab.lan",
    }


def test_a_github_push_is_verified_and_parsed() -> None:
    body = body_of(github_push())
    event = verify_and_parse(github_headers(body), body, SECRET)
    assert event == PushEvent("github", "refs/heads/main", "main", AFTER, "ada")


def test_a_gitea_push_is_verified_and_parsed() -> None:
    body = body_of(gitea_push())
    event = verify_and_parse(gitea_headers(body), body, SECRET)
    assert event == PushEvent("gitea", "refs/heads/main", "main", AFTER, "ada")


def test_gitea_may_be_verified_by_its_github_style_header_alone() -> None:
    body = body_of(gitea_push())
    headers = {"X-Gitea-Event": "push", "X-Hub-Signature-256": f"sha256={sign(body)}"}
    assert verify_and_parse(headers, body, SECRET) is not None


def test_a_forgejo_push_is_verified_and_parsed() -> None:
    body = body_of(gitea_push())
    headers = {"X-Forgejo-Event": "push", "X-Forgejo-Signature": sign(body)}
    event = verify_and_parse(headers, body, SECRET)
    assert event is not None and event.provider == "forgejo" and event.branch == "main"


def test_a_gitlab_push_is_verified_and_parsed() -> None:
    body = body_of(gitlab_push())
    event = verify_and_parse(gitlab_headers(), body, SECRET)
    assert event == PushEvent("gitlab", "refs/heads/main", "main", AFTER, "ada")


def test_headers_are_matched_in_any_case() -> None:
    body = body_of(github_push())
    headers = {k.lower(): v for k, v in github_headers(body).items()}
    headers["X-GITHUB-EVENT"] = headers.pop("x-github-event")
    assert verify_and_parse(headers, body, SECRET) is not None


def test_a_github_ping_is_accepted_without_a_sync() -> None:
    body = body_of({"zen": "Design for failure.", "hook_id": 292430182, "hook": {}})
    assert verify_and_parse(github_headers(body, "ping"), body, SECRET) is None


def test_an_unsigned_ping_is_refused() -> None:
    body = body_of({"zen": "Design for failure."})
    with pytest.raises(WebhookError, match="missing signature"):
        verify_and_parse({"X-GitHub-Event": "ping"}, body, SECRET)


def test_events_that_are_not_pushes_are_accepted_without_a_sync() -> None:
    body = body_of({"action": "opened", "number": 1})
    assert verify_and_parse(github_headers(body, "pull_request"), body, SECRET) is None
    headers = gitlab_headers(event="Merge Request Hook")
    assert verify_and_parse(headers, body_of({"object_kind": "merge_request"}), SECRET) is None


@pytest.mark.parametrize(
    ("ref", "branch"),
    [
        ("refs/heads/main", "main"),
        ("refs/heads/feature/dns", "feature/dns"),
        ("refs/tags/v1", None),
    ],
)
def test_the_branch_comes_from_the_ref(ref: str, branch: str | None) -> None:
    body = body_of(github_push(ref))
    event = verify_and_parse(github_headers(body), body, SECRET)
    assert event is not None and (event.ref, event.branch) == (ref, branch)


def test_a_gitlab_tag_push_is_not_a_branch_push() -> None:
    body = body_of(gitlab_push("refs/tags/v1", kind="tag_push"))
    event = verify_and_parse(gitlab_headers(event="Tag Push Hook"), body, SECRET)
    assert event is not None and event.branch is None and event.ref == "refs/tags/v1"


def test_a_gitlab_system_hook_push_is_a_push() -> None:
    body = body_of(gitlab_push())
    event = verify_and_parse(gitlab_headers(event="System Hook"), body, SECRET)
    assert event is not None and event.branch == "main"


def test_a_deleted_branch_has_no_sha() -> None:
    body = body_of(github_push(after="0" * 40))
    event = verify_and_parse(github_headers(body), body, SECRET)
    assert event is not None and event.branch == "main" and event.sha is None


def test_a_form_encoded_github_payload_is_read() -> None:
    body = urlencode({"payload": json.dumps(github_push())}).encode()
    headers = github_headers(body) | {"Content-Type": "application/x-www-form-urlencoded"}
    event = verify_and_parse(headers, body, SECRET)
    assert event is not None and event.sha == AFTER


def refusals() -> list[tuple[str, dict[str, str], bytes, str]]:
    """(case, headers, body, expected reason) for every way a request is refused."""
    gh, ge, gl = body_of(github_push()), body_of(gitea_push()), body_of(gitlab_push())
    other = sign(gh, "another-secret")
    tampered = gh.replace(b"refs/heads/main", b"refs/heads/evil")
    no_sig = {k: v for k, v in github_headers(gh).items() if k != "X-Hub-Signature-256"}
    gitea_wrong = gitea_headers(ge) | {"X-Gitea-Signature": sign(ge, "another-secret")}
    gitea_none = {"X-Gitea-Event": "push"}
    bad_json = b"{not json"
    no_ref = body_of({"after": AFTER, "pusher": {"name": "ada"}})
    return [
        ("wrong github signature", github_headers(gh) | {"X-Hub-Signature-256": f"sha256={other}"}, gh, "bad signature in X-Hub-Signature-256"),
        ("missing github signature", no_sig, gh, "missing signature: no X-Hub-Signature-256"),
        ("body changed after signing", github_headers(gh), tampered, "bad signature"),
        ("signature without prefix", github_headers(gh) | {"X-Hub-Signature-256": sign(gh)}, gh, "does not start with 'sha256='"),
        ("wrong gitea signature", gitea_wrong, ge, "bad signature in X-Gitea-Signature"),
        ("missing gitea signature", gitea_none, ge, "missing signature: no X-Gitea-Signature or X-Hub-Signature-256"),
        ("gitea body changed", gitea_headers(ge), ge + b" ", "bad signature"),
        ("wrong gitlab token", gitlab_headers("hook-s3cret-Ph7"), gl, "bad X-Gitlab-Token"),
        ("missing gitlab token", {"X-Gitlab-Event": "Push Hook"}, gl, "missing X-Gitlab-Token"),
        ("unknown sender", {"Content-Type": "application/json"}, gh, "unknown sender"),
        ("malformed json", github_headers(bad_json), bad_json, "not JSON"),
        ("missing ref", github_headers(no_ref), no_ref, "the push has no ref"),
        ("not utf-8", github_headers(b"\xff\xfe"), b"\xff\xfe", "not JSON"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [case[1:] for case in refusals()],
    ids=[case[0] for case in refusals()],
)
def test_refusals_say_why_and_never_reveal_the_secret(
    headers: dict[str, str], body: bytes, reason: str
) -> None:
    with pytest.raises(WebhookError, match=reason) as caught:
        verify_and_parse(headers, body, SECRET)
    error = caught.value
    assert error.status in (400, 401)
    for hidden in (SECRET, sign(body), SECRET[:-1]):
        assert hidden not in str(error) and hidden not in error.reason


def test_signature_problems_are_401_and_bad_payloads_400() -> None:
    body = body_of(github_push())
    with pytest.raises(WebhookError) as caught:
        verify_and_parse(github_headers(body), body, "another-secret")
    assert caught.value.status == 401
    with pytest.raises(WebhookError) as caught:
        verify_and_parse(github_headers(b"[]"), b"[]", SECRET)
    assert caught.value.status == 400


def test_without_a_configured_secret_every_webhook_is_refused() -> None:
    body = body_of(github_push())
    unsigned = {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={sign(body, '')}"}
    with pytest.raises(WebhookError, match="no webhook secret is configured"):
        verify_and_parse(unsigned, body, "")
    with pytest.raises(WebhookError, match="no webhook secret is configured"):
        verify_and_parse(gitlab_headers(""), body_of(gitlab_push()), "")
