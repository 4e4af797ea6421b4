"""What a person would tell the robot for each built-in task: the ``task`` string a remote policy
receives (LeRobot's and openpi's language input) and the lbm policy's instruction. Tasks not
listed get their name in words."""

INSTRUCTIONS = {
    # Meta-World (the first eleven are what the shipped lbm checkpoints were trained with)
    "drawer-open": "open the drawer",
    "drawer-close": "close the drawer",
    "coffee-push": "push the mug under the coffee machine",
    "coffee-button": "press the button on the coffee machine",
    "pick-place": "pick up the puck and place it at the goal",
    "reach": "reach the goal position",
    "push": "push the puck to the goal",
    "button-press": "press the button",
    "door-open": "open the door",
    "window-open": "slide the window open",
    "peg-insert-side": "insert the peg into the hole from the side",
    "button-press-topdown": "press the button from the top",
    "door-close": "close the door",
    "window-close": "slide the window closed",
    "faucet-open": "turn the faucet on",
    "faucet-close": "turn the faucet off",
    "coffee-pull": "pull the mug from under the coffee machine",
    "pick-place-wall": "pick up the puck and place it at the goal behind the wall",
    "shelf-place": "place the puck on the shelf",
    "bin-picking": "move the puck from one bin to the other",
    # robomimic on robosuite
    "lift": "lift the cube",
    "can": "put the can in its bin",
    "square": "fit the square nut onto the square peg",
    "transport": "hand the hammer over and put it in the target bin",
    "tool_hang": "assemble the frame and hang the tool on it",
}


def instruction(task_id: str) -> str:
    return INSTRUCTIONS.get(task_id, task_id.replace("-", " ").replace("_", " "))
