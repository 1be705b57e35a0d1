"""The upload portal: a small web app where a VCSE service signs in, uploads its attendance sheet and
sees at once which rows were accepted and which need fixing.

It judges a sheet with the ingest's own reader (``sprx.readers.vcse``) and contract
(``schemas.vcse``), so its verdict is the one the ingest will reach. Its state (services, hashed
credentials, sessions, upload history and a copy of every sheet received) lives under
``$SPRX_HOME/portal/``, never in the pipeline's warehouse; accepted sheets are landed in
``landing/vcse/<service>/`` for the ingest to pick up.

Modules: ``store`` (the SQLite state), ``forms`` (streaming multipart with a size limit),
``checks`` (content and safety checks, the verdict), ``uploads`` (keeping, landing and loading a
sheet), ``app`` (the FastAPI pages and JSON API), ``cli`` (`sprx portal`).
"""
