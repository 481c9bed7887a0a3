"""Where M2's classifier q(y|x) is scored on the test split: its keys in metrics.json.

Apart from the code that measures it, as `mig_keys`, so that reading results (betavae-report,
the sweep summary) imports neither torch nor Lightning.
"""

TEST_ACCURACY = "test/accuracy"
TEST_CROSS_ENTROPY = "test/cross_entropy"
