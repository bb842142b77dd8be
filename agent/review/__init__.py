"""What a person reads: the lab notebook (`tether log`), `tether show`, the report with its plots, exports."""
