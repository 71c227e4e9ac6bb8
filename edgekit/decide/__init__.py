"""Deciding from the measurements: policy gates, the Pareto frontier, the hardware recommendation
and the diagnosis of each variant. Everything here is pure computation over the pipeline's outputs.

The names below are what params.yaml may refer to; they live here, not in the modules that use them,
so validating params imports none of the deciding code (a stage's DVC deps are the code it runs).
"""

STAGES = ("staging", "production")
OBJECTIVES = ("latency", "accuracy", "memory", "size")
