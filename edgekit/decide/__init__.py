"""Deciding from the measurements: policy gates, the Pareto frontier, the hardware recommendation
and the diagnosis of each variant. Everything here is pure computation over the pipeline's outputs.
"""
