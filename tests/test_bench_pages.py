"""The README and the bench pages: the README stays short and its links resolve, every figure row names its machine,
date and bench page, and `make bench` rewrites exactly the rows it measures (bench/run.py)."""

from __future__ import annotations

import re

from bench import run
from tests.conftest import REPO

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PAGES = [REPO / "README.md", REPO / "docs" / "README.md", REPO / "bench" / "README.md", *sorted(REPO.glob("bench/*/README.md"))]


def _figure_rows() -> list[str]:
    text = (REPO / "README.md").read_text()
    table = text.split("## Current figures", 1)[1].split("\n## ", 1)[0]
    return [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(("| figure", "|---"))]


def test_the_readme_reads_in_five_minutes_and_its_links_resolve():
    assert (REPO / "README.md").stat().st_size <= 12288
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links to {target}, which does not exist"


def test_every_bench_group_has_its_page():
    groups = sorted(p.parent.name for p in REPO.glob("bench/*/README.md"))
    assert groups == sorted(run.GROUPS)


def test_every_figure_names_its_machine_date_and_bench_page():
    rows = _figure_rows()
    assert len(rows) >= 8
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 4, row
        assert re.search(r"(AMD EPYC|Xeon)", cells[2]) and re.search(r"\d{4}-\d\d-\d\d", cells[2]), row
        assert re.fullmatch(r"\[\w+\]\(bench/\w+/README\.md\)", cells[3]), row
    marked = {m for row in rows for m in re.findall(r"<!-- bench:([a-z0-9_]+) -->", row)}
    assert marked == set(run.HEADLINE)  # `make bench` rewrites every row it measures, and no other


def _results() -> dict:
    stage = {"stations (atlas registration)": 12.34, "SEG": 1.0}
    return {"measured_at": "2031-01-02T03:04:05+00:00",
            "machine": {"cpu": "Test CPU", "cores": 2, "memory_gb": 8.0, "load_average_1min_at_start": 0.5},
            "nstage_run_clinical": {"wall_s": 20.5, "peak_rss_gb": 1.5, "stage_s": stage, "model": "m"},
            "study_time_clinical": {"cold_wall_s": 30.1, "warm_wall_s_median": 12.2, "peak_rss_gb": 1.9},
            "route_1_worker": {"studies_per_hour": 99.9}}


def test_make_bench_rewrites_its_rows_and_the_stage_table_and_nothing_else(tmp_path):
    readme, page = tmp_path / "README.md", tmp_path / "page.md"
    readme.write_text("# t\n\n| figure | value | machine, date | page |\n|---|---|---|---|\n"
                      "| other | 1 | AMD EPYC, 2026-12-01 | [x](bench/x/README.md) |\n"
                      "| old <!-- bench:nstage_run_clinical --> | 1 s | old | [pipeline](bench/pipeline/README.md) |\n"
                      "| kept <!-- bench:app_clinical --> | 2 s | old | [pipeline](bench/pipeline/README.md) |\n"
                      "| cold, warm <!-- bench:study_time_clinical --> | 1 s | old | [pipeline](bench/pipeline/README.md) |\n\ntail\n")
    page.write_text("head\n<!-- bench:start -->\nold table\n<!-- bench:end -->\ntail\n")
    results = _results()
    run.write_headline_rows(run.headline_rows(results), readme)
    run.write_stage_table(run.stage_table(results), page)
    lines = readme.read_text().splitlines()
    assert lines[4] == "| other | 1 | AMD EPYC, 2026-12-01 | [x](bench/x/README.md) |"
    assert "| 20.5 s; 1.5 GB (registration 12.3 s) | Test CPU, 2 cores, load 0.5, 2031-01-02 (`make bench`) |" in lines[5]
    assert lines[5].count("<!-- bench:nstage_run_clinical -->") == 1
    assert lines[6].startswith("| kept")  # not measured in this run: left as it was
    assert "| 30.1 s; 12.2 s; 1.9 GB |" in lines[7]
    assert lines[-1] == "tail"
    text = page.read_text()
    assert "old table" not in text and "| nstage_run_clinical | m | 20.5 | 1.5 |  | 12.3 |" in text and text.endswith("<!-- bench:end -->\ntail\n")


def test_make_bench_collects_every_current_result_of_the_groups():
    got = run.collected()
    files = sorted(p.relative_to(REPO).as_posix() for g in run.GROUPS for p in (REPO / "bench" / g).glob("*.json"))
    assert files and sorted(v["file"] for v in got.values()) == files
    assert all("cases" not in v for v in got.values())
