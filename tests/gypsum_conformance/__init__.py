"""pytest plugin that runs gypsum_client's own test suite against artifacts-gypsum."""
