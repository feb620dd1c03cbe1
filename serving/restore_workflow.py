"""Functions of the `restore` workflow archive.

The DAG (serving/restore.yaml) chains three model nodes, `repair`, `colorize` and `sr_x2`, and needs no
function node: a function node runs with one worker and batch 1 and would serialise every
request. TorchServe still requires a handler file in a workflow archive; this is it.
"""
