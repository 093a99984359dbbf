"""Pulumi ComponentResources of the abalone-mlops AWS stack (DESIGN §8), one per module.

``components.pipeline_definition`` is a plain module (no Pulumi import) shared with the moto
end-to-end test, as are the modules it builds the states with (``pipeline_states``,
``pipeline_training_states``, ``pipeline_release_states``); the others need
``pulumi``/``pulumi_aws``. Nothing here reads ``pulumi.Config``:
``__main__.py`` reads the stack config once and passes a :class:`components.config.StackConfig`.
"""
