def display(*args, **kwargs):
    pass


def HTML(*args, **kwargs):
    return None
