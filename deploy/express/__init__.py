"""MONAI Deploy Express: the Workflow Manager workflow definition and its checker."""
