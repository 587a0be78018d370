"""The README's Performance table, from a benchmark's results: `uv run python -m bench
--markdown` prints it after a run, `uv run python -m bench.table` from the last results.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.json")
HEAD = "| scenario | runner | baseline | ratio | target |\n|---|---|---|---|---|"


def markdown(results: dict[str, Any]) -> str:
    """One row per scenario; each target's verdict as the benchmark judged it."""
    rows = [HEAD, *_run_rows(results), *_memory_rows(results), *_door_rows(results)]
    load = results.get("load_average")
    when = f"Measured {results.get('when', '?')}"
    if load:
        when += f", load average {load['start']:.1f} at the start and {load['end']:.1f} at the end"
    return "\n".join(rows) + f"\n\n({when}.)"


def _verdict(results: dict[str, Any], name: str, target: str) -> str:
    met = results["targets"][name]["met"]
    return f"{target} — {'met' if met else '**missed**'}"


def _ms(figure: dict[str, Any]) -> str:
    return f"{figure['p50_ms']:.0f} ms"


def _run_rows(results: dict[str, Any]) -> list[str]:
    seq = results["sequential"]
    conc = results["concurrency"]
    files = results["files"]
    sdk_target = _verdict(results, "sequential echo p50 / bare SDK", "≤ 0.90 × SDK")
    cli_target = _verdict(results, "sequential p50 / docker run --rm", "below the CLI")
    rows = [
        f"| `echo hi`, sequential p50 | {_ms(seq['runner'])} | bare SDK {_ms(seq['sdk'])}, "
        f"`docker run --rm` {_ms(seq['cli'])} | {seq['ratio_vs_sdk']:.2f} / "
        f"{seq['ratio_vs_cli']:.2f} | {sdk_target}; {cli_target} |"
    ]
    for clients in ("1", "4", "16"):
        figure = conc[clients]
        low, high = figure["ratio_range"]
        target = "reported"
        if clients != "1":
            target = _verdict(results, f"{clients} clients: runs/s / bare SDK threads", "≥ 0.95")
        rows.append(
            f"| {clients} client{'s' if clients != '1' else ''}, runs/s (median of "
            f"{figure['blocks']} alternating blocks) | {figure['runner']['runs_per_s']} | bare "
            f"SDK threads {figure['sdk']['runs_per_s']} | {figure['throughput_ratio']:.2f} "
            f"({low:.2f}–{high:.2f}) | {target} |"
        )
    files_target = _verdict(results, "20 MiB dir in+out binary / bare archive", "≤ 1.2")
    rows.append(
        f"| {files['mib']} MiB directory in and returned, binary path (multipart in, "
        f"`multipart/mixed` out) | p50 {_ms(files['runner'])} | bare `put_archive`/"
        f"`get_archive` {_ms(files['sdk'])} | {files['ratio_vs_sdk']:.2f} | {files_target} |"
    )
    json_files = results["json_files"]
    rows.append(
        f"| the same over JSON (base64 tar.gz both ways) | p50 {_ms(json_files['runner'])} | "
        f"{_ms(json_files['sdk'])} | {json_files['ratio_vs_sdk']:.2f} | reported |"
    )
    return rows


def _memory_rows(results: dict[str, Any]) -> list[str]:
    health = results["health_under_load"]
    output = results["big_output"]
    json_memory = results["json_memory"]
    upload = results["big_upload"]
    return [
        f"| `/health` while {health['runs_in_flight']} runs are in flight | p50 "
        f"{health['health_p50_ms']} ms, p99 {health['health_p99_ms']} ms | | | "
        f"{_verdict(results, '/health p99 under load (ms)', 'p99 ≤ 50 ms')} |",
        f"| {output['output_mib']} MiB on stdout ({output['cap_mib']:g} MiB cap) | peak RSS "
        f"+{output['peak_rss_growth_mib']} MiB, {output['wall_s']} s | | "
        f"{output['growth_per_cap']} × cap | "
        f"{_verdict(results, 'big output: RSS growth / cap', '< 3 × cap')} |",
        f"| server memory for a {json_memory['request_mib']:.0f} MiB JSON request (content in) "
        f"| peak RSS +{json_memory['peak_rss_growth_mib']:.0f} MiB | | "
        f"{json_memory['growth_per_request_size']} × its size | "
        f"{_verdict(results, 'JSON request: RSS growth / its size', '≤ ~2 ×')} |",
        f"| {upload['upload_mib']} MiB upload over the binary path | peak RSS "
        f"+{upload['peak_rss_growth_mib']} MiB | | | "
        f"{_verdict(results, '200 MiB upload: RSS growth (MiB)', '≤ 32 MiB')} |",
    ]


def _door_rows(results: dict[str, Any]) -> list[str]:
    mcp, runs = results["mcp"], results["async"]
    rows = [
        f"| MCP `tools/call run_container` vs `POST /run` | {_ms(mcp['mcp'])} | "
        f"{_ms(mcp['rest'])} | {mcp['ratio_vs_rest']:.2f} | "
        f"{_verdict(results, 'MCP / REST', '≤ 1.2')} |",
        f"| `POST /runs` + SSE to the exit event vs `POST /run` | {_ms(runs['runs'])} | "
        f"{_ms(runs['run'])} | {runs['ratio_vs_run']:.2f} | "
        f"{_verdict(results, 'POST /runs + SSE / POST /run', '≤ 1.3')} |",
    ]
    for key, label in (("runsc", "`echo hi`"), ("runsc_files", "20 MiB round trip, binary path")):
        figure = results.get(key, {})
        if "ratio_vs_runc" in figure:
            rows.append(
                f"| gVisor (`runtime: runsc`) vs runc: {label} | {_ms(figure['runsc'])} | "
                f"{_ms(figure['runc'])} | {figure['ratio_vs_runc']:.2f} | reported |"
            )
    return rows


if __name__ == "__main__":
    sys.stdout.write(markdown(json.loads(RESULTS.read_text())) + "\n")
