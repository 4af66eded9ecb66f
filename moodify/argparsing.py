"""The help formatter every Moodify command uses."""

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, or an on/off flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.nargs == 0 or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)
