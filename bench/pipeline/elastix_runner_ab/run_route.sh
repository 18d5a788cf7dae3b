#!/bin/bash
cd "$(dirname "$0")/../../.."
for round in 1 2; do for runner in module program; do
  NSTAGE_ELASTIX_RUNNER=$runner .venv/bin/python -m bench.route.route_bench --studies 4 --workers 1 --out bench/pipeline/elastix_runner_ab/route_${runner}_${round}.json > bench/pipeline/elastix_runner_ab/route_${runner}_${round}.log 2>&1
  echo "$(date +%T) route $round $runner done"
done; done
echo ROUTE DONE
