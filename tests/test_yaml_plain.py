"""`spec.yaml_plain`: the same data as the marked parse for plain YAML, and a refusal (never a
different reading) for anything else."""

from __future__ import annotations

import pytest

from nebula.spec.yaml_plain import UnusualYamlError, plain_yaml
from nebula.spec.yamlfile import parse_yaml

PLAIN = {
    "empty": "",
    "comment only": "# nothing\n",
    "null document": "---\n...\n",
    "scalars": "a: 1\nb: 1.5\nc: true\nd: null\ne: ~\nf: '1'\ng: \"x\"\nh: 0x1f\ni: 1_000\n",
    "timestamps": "day: 2026-11-28\nat: 2026-11-28T10:00:00Z\n",
    "strings that look like others": "a: 10.0.0.1\nb: '300'\nc: 'true'\nd: 2001:db8::1\n",
    "block scalars": "a: |\n  one\n  two\nb: >\n  folded\n  text\n",
    "nested": "zone: a.test\nrecords:\n  - {name: www, type: A, value: [192.0.2.1, 192.0.2.2]}\n"
    "  - name: mail\n    type: MX\n    value: 10 mx.a.test.\n    ttl: 60\nempty: {}\nnone: []\n",
    "top-level list": "- 1\n- [2, 3]\n- {a: b}\n",
    "top-level scalar": "hello\n",
    "non-specific tag": "a: ! 12\n",
    "key without value": "a:\nb: 2\n",
}

UNUSUAL = {
    "anchor and alias": "a: &x 1\nb: *x\n",
    "merge key": "base: &b {x: 1}\nc:\n  <<: *b\n",
    "explicit tag": "a: !!str 12\n",
    "custom tag": "a: !secret x\n",
    "duplicate key": "a: 1\na: 2\n",
    "number key": "1: a\n",
    "null key": "~: a\n",
    "complex key": "? [a, b]\n: c\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "syntax error": "a: [1, 2\n",
    "bad indentation": "a:\n  b: 1\n c: 2\n",
}


@pytest.mark.parametrize("text", PLAIN.values(), ids=PLAIN.keys())
def test_plain_yaml_reads_as_the_marked_parse(text: str) -> None:
    assert plain_yaml(text) == parse_yaml(text, "x.yaml").data


@pytest.mark.parametrize("text", UNUSUAL.values(), ids=UNUSUAL.keys())
def test_anything_unusual_is_refused(text: str) -> None:
    with pytest.raises(UnusualYamlError):
        plain_yaml(text)
