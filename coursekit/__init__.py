"""coursekit: the course pipeline, one module per stage.

manifest -> notebook (parse nbgrader markup) -> release (nbgrader) -> autograder (otter)
-> sandbox/engine (run a submission safely) -> grade (batch, gradebook, CSV) -> feedback
-> validate (both grading paths agree) -> bench.
"""
