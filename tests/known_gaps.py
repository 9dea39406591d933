"""Tests that do not pass yet, each with the gap it shows.

They still run (marked ``xfail``, not strict), so the suite reports them as
expected failures and says at once when one starts passing. Each entry names
what is missing; the CHANGELOG's "Known gaps" section lists the same.
"""

from __future__ import annotations

DOCS = "the page does not yet create every file it uses, or its printed output changed with the format registry"

GAPS = {
    "tests/cli/test_verify_detect.py::test_convert_verify_writes_nothing_when_the_conversion_is_wrong":
        "the test replaces cli._build, which the format registry removed",
    "tests/formats/test_roundtrip.py::test_load_messages": "TF checkpoints and Paddle joined the format list the message names",
    "tests/formats/test_tf1_blocks_files.py::test_detect_format_by_content":
        "TF checkpoints and Paddle joined the formats that sniff a file",
    "tests/interop/test_verify.py::test_flax_file":
        "verify builds one oracle case per Flax file, load_all one module per layer",
    "tests/interop/test_verify.py::test_refusals": "verify's refusal messages changed with the format registry",
    "tests/docs/test_docs_run.py::test_page_runs_as_written[docs/frameworks/paddle.md]": DOCS,
    "tests/docs/test_docs_run.py::test_page_runs_as_written[docs/frameworks/tf-checkpoints.md]": DOCS,
    "tests/docs/test_docs_run.py::test_page_runs_as_written[docs/models.md]": DOCS,
    "tests/docs/test_docs_run.py::test_page_runs_as_written[docs/row-loop.md]": DOCS,
    "tests/docs/test_docs_run.py::test_page_runs_as_written[docs/variants.md]": DOCS,
    "tests/docs/test_docs_run.py::test_page_runs_as_written[docs/verify.md]": DOCS,
}


def gap(nodeid: str) -> str | None:
    """The gap a test shows, by its node id (a parametrised test by its name alone too)."""
    return GAPS.get(nodeid) or GAPS.get(nodeid.split("[", 1)[0])
