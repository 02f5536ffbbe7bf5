"""Training: a validated window -> a challenger in MLflow -> the promotion gate -> the ``champion`` alias.

The retrain DAG calls :mod:`~pipelines.training.steps` (``training_request``,
``run_training``, ``run_gate_step``, ``champion_event``); the work is
:func:`~pipelines.training.train.train_challenger` and
:func:`~pipelines.training.gate.run_gate`.
"""
