"""Pulumi entry point: read the stack config once, build one ``AbaloneMlops``, export outputs.

Everything else lives in ``components/`` (see ``components/abalone_mlops.py``).
"""

import pulumi

from components.abalone_mlops import build
from components.config import StackConfig, load_stack_config
from components.packaging import program_assets
from components.seed_model import seed_model_file


def read_config(stack: str | None = None) -> StackConfig:
    """The only place the program reads ``pulumi.Config``."""
    project = pulumi.Config()
    values = {
        key: value for key in StackConfig.config_keys() if (value := project.get(key)) is not None
    }
    region = pulumi.Config("aws").get("region")
    return load_stack_config(stack or pulumi.get_stack(), region, values)


def main() -> None:
    config = read_config()
    seed = seed_model_file(config.seed_model_path, config.seed_model_source)
    build(config, program_assets(seed))


if __name__ == "__main__":  # the Pulumi Python host runs this file as __main__
    main()
