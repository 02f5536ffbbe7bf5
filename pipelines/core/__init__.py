"""What every stage shares, and the only thing stages share.

``settings`` (where things run), ``config`` (model projects), ``errors`` (named
failures and exit codes), ``partitions`` (partition keys), ``catalog`` (every
stored artifact's key), ``storage`` (local or S3, atomic writes), ``tracking``
(MLflow), ``contracts`` (ODCS contracts), ``features``/``model``/``metrics``
(the modelling pieces), ``hooks`` (named points in long steps) and ``workers``.
"""
