"""Feed readers: each feed's files turned into chunks of text rows (``frames``), beside that feed's constants.

One module per feed (``emis``, ``systmone``, ``ambulance``, ``vcse``) and the pieces they share:
``frames`` (the frame convention and FeedFileError), ``names`` (file names), ``encodings``,
``records`` (record boundaries), ``sniff`` (the start of a file), ``headers`` (matching headings),
``csv_engine`` (the bulk of a CSV), ``archives`` (.zip guards) and ``codes`` (SNOMED concepts).
Nothing here imports Prefect, the flows or the contracts.
"""
