#!/bin/bash
# Paired A/B of Elastix's runners on whole studies (bench.pipeline.study_time), alternated in one sitting.
cd "$(dirname "$0")/../../.."
for round in 1 2; do
  for runner in module program; do
    for preset in small clinical; do
      NSTAGE_ELASTIX_RUNNER=$runner .venv/bin/python -m bench.pipeline.study_time --preset $preset --studies 3 \
        --out bench/pipeline/elastix_runner_ab/${preset}_${runner}_${round}.json > /dev/null 2>&1
      echo "$(date +%T) $round $runner $preset done"
    done
  done
done
echo AB DONE
