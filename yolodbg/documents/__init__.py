"""The JSON documents yolodbg writes, one module per kind, each with its ``SCHEMA`` id and builder.

- :mod:`~yolodbg.documents.explain`: ``yolodbg.explain/1`` (``explain_doc``), one bundle's loss;
- :mod:`~yolodbg.documents.compare`: ``yolodbg.compare/1`` (``compare_doc``);
- :mod:`~yolodbg.documents.scan`: ``yolodbg.scan/1`` (``scan_doc``, what ``ScanAggregate.summary`` returns);
- :mod:`~yolodbg.documents.trend`: ``yolodbg.trend/1`` (``trend_doc``, with the series' ``status``);
- :mod:`~yolodbg.documents.snapshot`: ``yolodbg.snapshot/1`` (``snapshot_doc``, ``recipe_record``);
- :mod:`~yolodbg.documents.check`: ``yolodbg.check/1`` (``check_doc``);
- :mod:`~yolodbg.documents.audit`: ``yolodbg.audit/1`` (``audit_doc``, what ``AuditAggregate.document`` returns);
- :mod:`~yolodbg.documents.common`: ``versions``, recorded by most of them.

Builders take the library's results (an ``Explanation``, a ``Comparison``, a ``ScanAggregate``,
an ``AuditAggregate``, ...) and return plain dicts; they print and write nothing (``render.jsonout`` serialises and
writes). Each document's JSON Schema is in ``yolodbg/schemas/`` (``yolodbg validate``). The
modules import the types they read only for type checking, so any layer may use them; this
``__init__`` imports nothing.
"""
