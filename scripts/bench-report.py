#!/usr/bin/env python3
"""Print the criterion results of the last `cargo bench` run as a table, then the ratios
issue 6 asks for (Tessera / floor, peer / Tessera) with the target each is held to.

Criterion cannot print ratios itself, so this reads target/criterion/**/new/estimates.json
(the median of each benchmark) and benchmark.json (its full id). Ratios are only meaningful
between numbers taken in the same run on the same machine.

Usage: scripts/bench-report.py [--markdown] [--issue13] [CRITERION_DIR [PAIRED_DIR]]

--issue13 prints only issue 13's near-the-floor / Python / 10 M-user targets (section
"Issue 13" below), which need no criterion results.
"""

import json
import os
import sys

# (label, numerator id, denominator id, target, how to judge: "le" = ratio <= target,
# "ge" = ratio >= target, None = informational). Ids are criterion full ids.
RATIOS = [
    # Choice of primitive (phase 1).
    ("HMAC 100 B: ring / RustCrypto", "hmac_sha256/100B/ring", "hmac_sha256/100B/rustcrypto", None, None),
    ("HMAC JWT input: ring / RustCrypto", "hmac_sha256/jwt_input_106B/ring", "hmac_sha256/jwt_input_106B/rustcrypto", None, None),
    ("SHA-256 54 B: ring / RustCrypto", "sha256/54B/ring", "sha256/54B/rustcrypto", None, None),
    ("floor: ring / RustCrypto", "floor/session_verify/ring", "floor/session_verify/rustcrypto", None, None),
    # Tessera / floor (phase 2): the floor is built from the engine's own tokens (engine.rs).
    ("session verify / floor (same lengths)", "tessera/session_verify", "tessera_floor/session_verify", 1.3, "le"),
    ("access verify / (SHA-256 + lookup) 1 M, hot", "tessera/access_token_verify_1M/hot", "tessera_floor/access_token_sha256_lookup_1M/hot", 1.2, "le"),
    ("access verify / (SHA-256 + lookup) 1 M, cold", "tessera/access_token_verify_1M/cold", "tessera_floor/access_token_sha256_lookup_1M/cold", 1.2, "le"),
    # Peer / Tessera.
    ("jsonwebtoken decode+validate / session verify", "peer_jsonwebtoken/hs256_decode_validate", "tessera/session_verify", 4.0, "ge"),
    ("jsonwebtoken encode / session issue", "peer_jsonwebtoken/hs256_encode", "tessera/session_issue", 3.0, "ge"),
    ("pasetors v4.local decrypt / session verify", "peer_pasetors/v4_local_decrypt", "tessera/session_verify", None, None),
    ("pasetors v4.local encrypt / session issue", "peer_pasetors/v4_local_encrypt", "tessera/session_issue", None, None),
    ("pasetors v4.public verify / session verify", "peer_pasetors/v4_public_verify", "tessera/session_verify", None, None),
    ("pasetors v4.public sign / session issue", "peer_pasetors/v4_public_sign", "tessera/session_issue", None, None),
    ("std HashMap plaintext lookup / access verify, hot", "peer_lookup_1M/std_hashmap_plaintext/hot", "tessera/access_token_verify_1M/hot", None, None),
    ("std HashMap plaintext lookup / access verify, cold", "peer_lookup_1M/std_hashmap_plaintext/cold", "tessera/access_token_verify_1M/cold", None, None),
    ("SHA-256(ring)+hashbrown / access verify, hot", "peer_lookup_1M/sha256_hashbrown/ring/hot", "tessera/access_token_verify_1M/hot", None, None),
    ("SHA-256(ring)+hashbrown / access verify, cold", "peer_lookup_1M/sha256_hashbrown/ring/cold", "tessera/access_token_verify_1M/cold", None, None),
    ("SHA-256(RustCrypto)+hashbrown / access verify, hot", "peer_lookup_1M/sha256_hashbrown/rustcrypto/hot", "tessera/access_token_verify_1M/hot", None, None),
]


# Differences (numerator - denominator, in ns): the C ABI's cost per call (benches/ffi.rs).
DIFFS = [
    ("session verify: C ABI - Rust API", "session_verify/c_abi", "session_verify/rust_api", 20.0),
    ("access verify: C ABI - Rust API", "access_verify/c_abi", "access_verify/rust_api", 20.0),
]

# Paired (interleaved) ratios written by the bench binaries to target/bench-paired/: name ->
# (label, target, how). These are the numbers to judge targets by on a shared machine.
PAIRED = {
    "hmac_ring_vs_rustcrypto": ("HMAC JWT input: ring / RustCrypto", None, None),
    "sha256_ring_vs_rustcrypto": ("SHA-256 54 B: ring / RustCrypto", None, None),
    "session_verify_vs_floor": ("session verify / floor", 1.3, "le"),
    "access_verify_vs_floor_hot": ("access verify / (SHA-256 + lookup) 1 M, hot", 1.2, "le"),
    "access_verify_vs_floor_cold": ("access verify / (SHA-256 + lookup) 1 M, cold", 1.2, "le"),
    "jsonwebtoken_decode_vs_session_verify": ("jsonwebtoken decode+validate / session verify", 4.0, "ge"),
    "jsonwebtoken_encode_vs_session_issue": ("jsonwebtoken encode / session issue", 3.0, "ge"),
}

# Paired differences: name -> (label, limit in ns). Difference = (ratio - 1) x Rust median.
PAIRED_DIFFS = {
    "c_abi_session_verify": ("session verify: C ABI - Rust API", 20.0),
    "c_abi_access_verify": ("access verify: C ABI - Rust API", 20.0),
}


# ---- Issue 13, parts 3-5: near the floor, Python, 10 M users --------------------------------
# Kept in its own section (and function, `issue13_floor_targets`) so the compaction and
# tail-latency targets of the same issue can be added beside it without touching it.
#
# Inputs, all from the same kind of runs the commands in docs/BENCHMARKS.md describe:
# - paired ratios in target/bench-paired/ (cargo bench --bench engine -- paired; the Python
#   one from bindings/python/bench/bench_verify.py);
# - the load harness's and cold_open's output, saved as target/bench-10m/load.txt and
#   target/bench-10m/cold_open.txt (`... | tee` them; their text is parsed here).
ISSUE13_PAIRED = [
    # (paired name, label, target, how)
    ("session_issue_vs_floor", "session issue / issue floor", 1.3, "le"),
    ("session_verify_vs_floor", "session verify / verify floor", 1.3, "le"),
    ("jsonwebtoken_decode_vs_session_verify", "jsonwebtoken decode / session verify", 4.0, "ge"),
    ("python_session_verify_vs_ctypes", "Python verify_session_token / bare ctypes call", 2.0, "le"),
]
ISSUE13_USERS = 10_000_000


def issue13_floor_targets(paired, bench10m_root, markdown):
    """Prints every issue-13 target of parts 3-5 with met / not met (or "not measured")."""
    import re

    rows = []
    for name, label, target, how in ISSUE13_PAIRED:
        d = paired.get(name)
        if d is None:
            rows.append((label, "not measured", f"{'≤' if how == 'le' else '≥'} {target}×", "not measured"))
            continue
        r = d["ratio_median"]
        tgt, status = judge(r, target, how)
        value = f"{r:.2f}× (IQR {d['ratio_p25']:.2f}–{d['ratio_p75']:.2f}; {d['a_ns']:.0f} / {d['b_ns']:.0f} ns)"
        rows.append((label, value, tgt, status))

    def read(name):
        try:
            with open(os.path.join(bench10m_root, name)) as f:
                return f.read()
        except OSError:
            return None

    load = read("load.txt")
    m = load and re.search(
        r"memory: (\d+) B resident per minimal user, (\d+) B per access token "
        r"\(RSS deltas over (\d+) users, (\d+) tokens\)", load)
    for i, (label, limit) in enumerate([("memory per user", 300), ("memory per access token", 80)]):
        if not m:
            rows.append((f"{label} at 10 M users", "not measured", f"≤ {limit} B", "not measured"))
            continue
        users, value = int(m.group(3)), int(m.group(1 + i))
        ok = value <= limit and users >= ISSUE13_USERS
        note = "" if users >= ISSUE13_USERS else f" (only {users:,} users: not the target's size)"
        rows.append((f"{label} at 10 M users", f"{value} B over {users:,} users{note}",
                     f"≤ {limit} B", "met" if ok else "NOT MET"))

    cold = read("cold_open.txt")
    built = cold and re.search(r"built (\d+) users", cold)
    opens = re.findall(r"open ([^:]+): ([\d.]+) s wall, ([\d.]+) s CPU", cold or "")
    if not (built and opens):
        rows.append(("cold open of 10 M users", "not measured", "≤ 10 s", "not measured"))
    for what, wall, cpu in opens:
        users = int(built.group(1))
        ok = float(wall) <= 10.0 and users >= ISSUE13_USERS
        note = "" if users >= ISSUE13_USERS else f", only {users:,} users"
        rows.append((f"cold open of 10 M users, {what}", f"{float(wall):.2f} s wall ({float(cpu):.2f} s CPU{note})",
                     "≤ 10 s", "met" if ok else "NOT MET"))

    print()
    print("Issue 13 (near the floor, Python, 10 M users)")
    if markdown:
        print("| target | measured | limit | status |")
        print("| --- | --- | ---: | --- |")
    for label, value, tgt, status in rows:
        if markdown:
            print(f"| {label} | {value} | {tgt} | {status} |")
        else:
            print(f"{label:<52} {value:<60} {tgt:<8} {status}")


def judge(r, target, how):
    if how is None:
        return "", ""
    tgt = ("≤ " if how == "le" else "≥ ") + f"{target}×"
    ok = r <= target if how == "le" else r >= target
    return tgt, "met" if ok else "NOT MET"


def load_paired(root):
    out = {}
    if not os.path.isdir(root):
        return out
    for f in sorted(os.listdir(root)):
        if f.endswith(".json"):
            with open(os.path.join(root, f)) as fh:
                d = json.load(fh)
            out[d["name"]] = d
    return out


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def load(root):
    results = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            full_id = json.load(f)["full_id"]
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        med = est["median"]
        ci = med["confidence_interval"]
        results[full_id] = (med["point_estimate"], ci["lower_bound"], ci["upper_bound"])
    return results


# ----- Latency under load (issue 13) --------------------------------------------------------
# Written by `tessera-load --scenario mixed-compaction` (target/bench-load/mixed-compaction.json):
# one durable writer, one verifier and compactions in a loop. Self-contained: only main() calls
# it.

LOAD_JSON = os.path.join("bench-load", "mixed-compaction.json")


def latency_under_load(target_dir, markdown):
    """Prints the issue-13 targets from the harness's JSON; returns False when there is none."""
    path = os.path.normpath(os.path.join(target_dir, LOAD_JSON))
    if not os.path.exists(path):
        return False
    with open(path) as f:
        d = json.load(f)
    ops = d["ops"]
    targets = d["targets"]
    print()
    print(
        f"Latency under load (issue 13): {path}: {d['users']} users, {d['duration_s']:.0f} s, "
        f"{d['compactions']} compactions (median {d['compaction_median_s']:.2f} s), "
        f"load average {d['load_average_before']} before, {d['load_average_after']} after"
    )
    rows = []

    def q(name, key):
        o = ops.get(name)
        return None if o is None or o["count"] == 0 else o[key]

    limit_ns = targets["write_p999_during_compaction_ns"]
    during = q("during_compaction/all_writes", "p999_ns")
    if during is not None:
        ok = during <= limit_ns
        rows.append(("write p99.9 during compaction", f"{during / 1e6:.2f} ms",
                     f"≤ {limit_ns / 1e6:.0f} ms", "met" if ok else "NOT MET"))
    for name, label in [("during_compaction/all_writes", "write max during compaction"),
                        ("outside_compaction/all_writes", "write p99.9 outside compaction")]:
        key = "max_ns" if "max" in label else "p999_ns"
        v = q(name, key)
        if v is not None:
            rows.append((label, f"{v / 1e6:.2f} ms", "", ""))
    factor = targets["verify_p999_over_idle_p50"]
    for op in ["verify_session", "verify_access"]:
        idle, load = q(f"idle/{op}", "p50_ns"), q(f"load/{op}", "p999_ns")
        for when in ["during", "outside"]:
            v = q(f"load_{when}_compaction/{op}", "p999_ns")
            if v is not None and idle is not None:
                rows.append((f"{op} p99.9 under load, {when} compaction / idle p50",
                             f"{v / idle:.1f}× ({v / 1e3:.2f} µs)", "", ""))
        if idle is None or load is None:
            continue
        r = load / idle
        rows.append((f"{op} p99.9 under load / idle p50", f"{r:.1f}× ({load / 1e3:.2f} µs)",
                     f"≤ {factor:g}×", "met" if r <= factor else "NOT MET"))
        idle999 = q(f"idle/{op}", "p999_ns")
        rows.append((f"{op} idle p99.9 / idle p50 (the machine's floor)",
                     f"{idle999 / idle:.1f}×", "", ""))
    if markdown:
        print("| latency under load | value | target | status |")
        print("| --- | ---: | ---: | --- |")
        for label, v, tgt, status in rows:
            print(f"| {label} | {v} | {tgt} | {status} |")
    else:
        for label, v, tgt, status in rows:
            print(f"{label:<52} {v:>22}  {tgt:<8} {status}")
    return True


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    markdown = "--markdown" in sys.argv
    target_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target")
    root = args[0] if args else os.path.join(target_dir, "criterion")
    paired_root = args[1] if len(args) > 1 else os.path.join(target_dir, "bench-paired")
    results = load(root)
    paired = load_paired(paired_root)
    if "--issue13" in sys.argv:
        # Only issue 13's targets: they need no criterion results.
        issue13_floor_targets(paired, os.path.join(target_dir, "bench-10m"), markdown)
        latency_under_load(target_dir, markdown)
        return
    if latency_under_load(target_dir, markdown) and not results:
        return
        return
    if not results:
        sys.exit(f"no criterion results under {root}: run `cargo bench` first")

    if markdown:
        print("| benchmark | median | 95% CI |")
        print("| --- | ---: | --- |")
    for name in sorted(results):
        med, lo, hi = results[name]
        if markdown:
            print(f"| `{name}` | {fmt_ns(med)} | {fmt_ns(lo)} – {fmt_ns(hi)} |")
        else:
            print(f"{name:<60} {fmt_ns(med):>12}   [{fmt_ns(lo)} .. {fmt_ns(hi)}]")

    print()
    if markdown:
        print("| ratio | value | target | status |")
        print("| --- | ---: | ---: | --- |")
    for label, num, den, target, how in RATIOS:
        if num not in results or den not in results:
            continue
        r = results[num][0] / results[den][0]
        tgt, status = judge(r, target, how)
        if markdown:
            print(f"| {label} | {r:.2f}× | {tgt} | {status} |")
        else:
            print(f"{label:<52} {r:6.2f}×  {tgt:<8} {status}")

    for label, num, den, limit in DIFFS:
        if num not in results or den not in results:
            continue
        d = results[num][0] - results[den][0]
        status = "met" if d <= limit else "NOT MET"
        if markdown:
            print(f"| {label} | {d:+.0f} ns | ≤ {limit:.0f} ns | {status} |")
        else:
            print(f"{label:<52} {d:+6.0f} ns  ≤ {limit:.0f} ns  {status}")

    if paired:
        print()
        print("Paired (interleaved) ratios: median over rounds, interquartile range in brackets")
        if markdown:
            print("| ratio (paired) | median | IQR | target | status |")
            print("| --- | ---: | --- | ---: | --- |")
        for name, (label, target, how) in PAIRED.items():
            d = paired.get(name)
            if d is None:
                continue
            r = d["ratio_median"]
            tgt, status = judge(r, target, how)
            iqr = f"{d['ratio_p25']:.2f}–{d['ratio_p75']:.2f}"
            if markdown:
                print(f"| {label} | {r:.2f}× | {iqr} | {tgt} | {status} |")
            else:
                print(f"{label:<52} {r:6.2f}×  [{iqr}]  {tgt:<8} {status}")
        for name, (label, limit) in PAIRED_DIFFS.items():
            d = paired.get(name)
            if d is None:
                continue
            diff = (d["ratio_median"] - 1.0) * d["b_ns"]
            lo = (d["ratio_p25"] - 1.0) * d["b_ns"]
            hi = (d["ratio_p75"] - 1.0) * d["b_ns"]
            status = "met" if diff <= limit else "NOT MET"
            iqr = f"{lo:+.0f}–{hi:+.0f} ns"
            if markdown:
                print(f"| {label} | {diff:+.0f} ns | {iqr} | ≤ {limit:.0f} ns | {status} |")
            else:
                print(f"{label:<52} {diff:+6.0f} ns  [{iqr}]  ≤ {limit:.0f} ns  {status}")

    issue13_floor_targets(paired, os.path.join(target_dir, "bench-10m"), markdown)


if __name__ == "__main__":
    main()
