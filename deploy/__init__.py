"""Deployment of the app: the MAP's build tools (map/) and its MONAI Deploy Express workflow (express/)."""
