python -m pytest -m gpu -q -rs -p no:cacheprovider --continue-on-collection-errors
