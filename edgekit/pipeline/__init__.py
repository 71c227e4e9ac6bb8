"""One module per DVC stage, named after its verb: the stage, the ``edgekit`` CLI verb, the
``edgekit.api`` function and the module share one name.

environment, calibrate, data, baseline, optimize, benchmark, evaluate, select, report, model_card, gate

Each module's ``run`` reads the stage's inputs, calls the libraries (``edgekit.bench`` measures,
``edgekit.tasks.embedding.metrics`` scores, ``edgekit.decide`` judges, without touching files) and writes the stage's
outputs. What a stage imports is what its DVC deps list (tests/test_pipeline.py proves it).
"""
