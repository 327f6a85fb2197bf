// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title PerunToken
/// @notice A plain ERC-20 test token ("PerunToken", "PRN", 18 decimals). Revert strings follow
///         OpenZeppelin 4.x so clients see the same reasons as with other Perun deployments.
contract PerunToken {
    string public constant name = "PerunToken";
    string public constant symbol = "PRN";
    uint8 public constant decimals = 18;

    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @notice Mints `initBalance` to each of `accounts`.
    constructor(address[] memory accounts, uint256 initBalance) {
        for (uint256 i; i < accounts.length; ++i) {
            address to = accounts[i];
            require(to != address(0), "ERC20: mint to the zero address");
            totalSupply += initBalance;
            unchecked {
                // cannot overflow: bounded by totalSupply
                balanceOf[to] += initBalance;
            }
            emit Transfer(address(0), to, initBalance);
        }
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        _approve(msg.sender, spender, amount);
        return true;
    }

    /// @dev An allowance of 2**256-1 is infinite and never decreases.
    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= amount, "ERC20: insufficient allowance");
            unchecked {
                allowance[from][msg.sender] = allowed - amount;
            }
        }
        _transfer(from, to, amount);
        return true;
    }

    function increaseAllowance(address spender, uint256 addedValue) external returns (bool) {
        _approve(msg.sender, spender, allowance[msg.sender][spender] + addedValue);
        return true;
    }

    function decreaseAllowance(address spender, uint256 subtractedValue) external returns (bool) {
        uint256 current = allowance[msg.sender][spender];
        require(current >= subtractedValue, "ERC20: decreased allowance below zero");
        unchecked {
            _approve(msg.sender, spender, current - subtractedValue);
        }
        return true;
    }

    function _transfer(address from, address to, uint256 amount) private {
        require(to != address(0), "ERC20: transfer to the zero address");
        uint256 bal = balanceOf[from];
        require(bal >= amount, "ERC20: transfer amount exceeds balance");
        unchecked {
            // cannot overflow: the sum of all balances is totalSupply
            balanceOf[from] = bal - amount;
            balanceOf[to] += amount;
        }
        emit Transfer(from, to, amount);
    }

    function _approve(address owner, address spender, uint256 amount) private {
        require(spender != address(0), "ERC20: approve to the zero address");
        allowance[owner][spender] = amount;
        emit Approval(owner, spender, amount);
    }
}
