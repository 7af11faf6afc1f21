"""The figures of benches/lib.sh's interleaved_rounds: per node, the medians over the rounds of
req/s (wrk's), req per CPU-second (req/s x duration / the node's CPU seconds in the round) and
busy cores (CPU seconds / duration)."""
import re
import statistics


def rps(path):
    text = open(path).read()
    # wrk's "Requests/sec: N", or h2load's "finished in Ts, N req/s".
    m = re.search(r"Requests/sec:\s+([\d.]+)", text) or re.search(r"finished in [\d.]+s, ([\d.]+) req/s", text)
    return float(m.group(1)) if m else 0.0


def medians(tmp, names, rounds, hz, duration):
    dur = float(str(duration).rstrip("s"))
    res = {}
    for n in names:
        r = [rps(f"{tmp}/wrk-{n}-{i}.txt") for i in range(1, rounds + 1)]
        cpu = [int(open(f"{tmp}/cpu-{n}-{i}.txt").read()) / hz for i in range(1, rounds + 1)]
        per_core = [x * dur / c if c else 0 for x, c in zip(r, cpu)]
        res[n] = (statistics.median(r), statistics.median(per_core), statistics.median(cpu) / dur)
    return res


def paired(tmp, name, base, tag, rounds):
    """Rounds `tag`1..`rounds`: the median req/s of `name`, the median over the rounds of its req/s
    over `base`'s in the same round, and those per-round ratios."""
    r = [rps(f"{tmp}/wrk-{name}-{tag}{i}.txt") for i in range(1, rounds + 1)]
    b = [rps(f"{tmp}/wrk-{base}-{tag}{i}.txt") for i in range(1, rounds + 1)]
    ratios = [x / y if y else 0 for x, y in zip(r, b)]
    return statistics.median(r), statistics.median(ratios), ratios
