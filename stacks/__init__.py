"""The infrastructure program as a package: one module per role (config, machines, access, network,
vm, deploy, local). ``__main__.py`` at the project root is its table of contents."""
