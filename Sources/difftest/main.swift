print("difftest")
