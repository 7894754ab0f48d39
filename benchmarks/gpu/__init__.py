"""The one-shot GPU check (``check.sh``): tests, model-only sweep, precision check and HTTP, in one run."""
